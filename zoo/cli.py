"""What every zoo command shares: environment defaults, flag parsing, the console, one-line errors.

`run(main, doc)` is the entry of zoo-train, zoo-eval, zoo-benchmark and zoo-export (and of the root scripts that
wrap them). In order, before `main` runs:
- Environment (`environment_defaults`): where jax will run on CPU only, the XLA:CPU flags that speed up
  convolutions (FAST_CPU_FLAGS) are appended to XLA_FLAGS; TF_CPP_MIN_LOG_LEVEL defaults to 2 (TensorFlow's C++
  notices, e.g. oneDNN's, stay hidden; set it to 0 to see them). A value the user set is kept: their XLA_FLAGS are
  appended to, never overwritten, a flag they set themselves is left as they set it, and `XLA_FLAGS=` (set and
  empty) keeps XLA's own defaults. XLA reads XLA_FLAGS when jax creates its first backend, not at `import jax`,
  so setting it here, after the zoo (and so jax) was imported and before any computation, takes effect.
- Flags: absl's, parsed so that a bad flag or `--config.KEY` override ends in one `error: ...` line.
- Console: absl logs to stderr. By default it shows the zoo's own INFO records (progress, evals, checkpoints
  saved) and every library's warnings and errors; other libraries' INFO records (orbax's checkpointing steps,
  TFDS's, clu's metric echo) appear with absl's usual `-v 1` / `--verbosity=1`, which also shows DEBUG records.
  `--verbosity=-1` shows warnings only.
- A `UserError` raised by `main` ends the process with its message on one line, `error: ...`, and exit code 1.
"""
import difflib
import functools
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import runpy
import sys

from absl import app, flags
from absl import logging as absl_logging

from zoo.errors import UserError

# XLA:CPU runs 1x1 convolutions as dots rather than as YNNPACK convolutions: faster ResNet-RS steps, measured in
# docs/benchmark.md.
FAST_CPU_FLAGS = ('--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',)
# XLA aborts on a flag it does not know and the flag above is experimental: it is set only for the jaxlib releases
# it was measured with, [low, high).
FAST_CPU_JAXLIB = ((0, 10, 2), (0, 11))
ZOO_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def jax_runs_on_cpu_only(environ) -> bool:
  """True when jax will run on CPU: JAX_PLATFORMS unset or 'cpu', no accelerator plugin installed (GPU, TPU, ...;
  another XLA build that may not know FAST_CPU_FLAGS), and a jaxlib that knows them."""
  if environ.get('JAX_PLATFORMS', '').strip().lower() not in ('', 'cpu'):
    return False
  if importlib.metadata.entry_points(group='jax_plugins') or any(
      importlib.util.find_spec(name) for name in ('jax_plugins', 'libtpu')) or environ.get('TPU_LIBRARY_PATH'):
    return False
  try:
    version = tuple(int(v) for v in re.findall(r'\d+', importlib.metadata.version('jaxlib'))[:3])
  except importlib.metadata.PackageNotFoundError:
    return False
  return FAST_CPU_JAXLIB[0] <= version < FAST_CPU_JAXLIB[1]


def environment_defaults(environ, cpu_only: bool) -> None:
  """Sets the commands' defaults in `environ` (os.environ, or a dict), keeping every value the user set (see the
  module docstring): TF_CPP_MIN_LOG_LEVEL=2, and if `cpu_only` FAST_CPU_FLAGS appended to XLA_FLAGS."""
  environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if not cpu_only or environ.get('XLA_FLAGS') == '':
    return
  given = environ.get('XLA_FLAGS', '').split()
  names = {flag.split('=')[0] for flag in given}
  environ['XLA_FLAGS'] = ' '.join(given + [flag for flag in FAST_CPU_FLAGS if flag.split('=')[0] not in names])


def json_object(text: str, flag: str) -> dict:
  """The JSON object a flag holds (--model_kwargs='{"dtype": "bfloat16"}'); anything else is one UserError line."""
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    value = e
  if not isinstance(value, dict):
    raise UserError(f'{flag} must be a JSON object, e.g. {{"dtype": "bfloat16"}}, got {text!r}'
                    + (f' ({value})' if isinstance(value, json.JSONDecodeError) else ''))
  return value


class ZooInfoOnly(logging.Filter):
  """Passes warnings and errors from anyone, and INFO and below only from the zoo's own modules and those under
  `program_dirs` (the running program's package: a project of the repository run with `python -m`)."""

  def __init__(self, program_dirs: tuple[str, ...] = ()):
    super().__init__()
    self.own = (ZOO_DIR, *program_dirs)

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.pathname.startswith(self.own)


def program_package_dir() -> tuple[str, ...]:
  """The folder of the top-level package of the running `__main__` (projects/ for `python -m projects.pnp.experiment`),
  or nothing when it is no package's module (a console script, `python -c`)."""
  path = getattr(sys.modules.get('__main__'), '__file__', None)
  folder = os.path.dirname(os.path.abspath(path)) if path else None
  if folder is None or not os.path.isfile(os.path.join(folder, '__init__.py')):
    return ()
  while os.path.isfile(os.path.join(os.path.dirname(folder), '__init__.py')):
    folder = os.path.dirname(folder)
  return (folder + os.sep,)


def quiet_libraries() -> None:
  """Below `--verbosity=1`, other libraries' INFO records leave the console (absl's handler, on the root logger)."""
  if absl_logging.get_verbosity() < 1:
    absl_logging.get_absl_handler().addFilter(ZooInfoOnly(program_package_dir()))


def import_config_package(argv) -> None:
  """Imports the folder of `--config=DIR/FILE.py` as package DIR when it is one, so that a config file imports its
  siblings (configs/quickstart.py: `from configs import common`) under a console script too, which, unlike
  `python train.py` run from the repository root, has no working directory on the import path."""
  spec = _config_spec(argv)
  if spec is None:
    return
  folder = os.path.dirname(os.path.abspath(spec.partition(':')[0]))
  name, init = os.path.basename(folder), os.path.join(folder, '__init__.py')
  if not os.path.isfile(init) or name in sys.modules or not name.isidentifier():
    return
  module_spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[folder])
  sys.modules[name] = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(sys.modules[name])


def config_module(path: str):
  """The module of config file `path` (relative to the working directory, as `--config` takes it), imported as a
  module of its folder's package (import_config_package)."""
  if not os.path.isfile(path):
    raise UserError(f'{path} not found: run from the repository root, whose configs/ holds the recipes')
  import_config_package([f'--config={path}'])
  folder, name = os.path.split(os.path.abspath(path))
  return importlib.import_module(f'{os.path.basename(folder)}.{os.path.splitext(name)[0]}')


def _config_spec(argv) -> str | None:
  """The value of `--config=SPEC` or `--config SPEC` in `argv`."""
  for i, a in enumerate(argv):
    if a.startswith('--config='):
      return a.split('=', 1)[1]
    if a == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _last_line(text: str) -> str:
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return lines[-1] if lines else str(text)


def _unknown_key(argv) -> str:
  """Names the first `--config.KEY=...` override that the config file does not define."""
  path, _, arg = _config_spec(argv).partition(':')
  get_config = runpy.run_path(path)['get_config']
  config = get_config(arg) if arg else get_config()
  for a in argv:
    if not a.startswith('--config.'):
      continue
    key = a.split('=', 1)[0][len('--config.'):]
    node = config
    for i, part in enumerate(key.split('.')):
      if not hasattr(node, 'keys') or part not in node:
        known = list(node.keys()) if hasattr(node, 'keys') else []
        close = difflib.get_close_matches(part, known, n=1)
        prefix = '.'.join(key.split('.')[:i] + close)
        return f'unknown config key {key!r}' + (f'; did you mean {prefix!r}?' if close else '')
      node = node[part]
  return 'unknown config key'


def parse_flags(argv):
  """absl `flags_parser` for app.run: unknown `--config.KEY` overrides and config errors exit with one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'error: {_last_line(e)}')
  except (AttributeError, KeyError):
    sys.exit(f'error: {_unknown_key(argv)}')


def _one_line_errors(main, argv):
  try:
    return main(argv)
  except UserError as e:
    sys.exit(f'error: {e}')


def run(main, doc: str) -> None:
  """Runs the absl `main(argv)` of a command whose flags are defined, as the module docstring says. `doc` (the
  command module's docstring) is what `--help` prints above the flags."""
  environment_defaults(os.environ, jax_runs_on_cpu_only(os.environ))
  import_config_package(sys.argv)
  # absl's --help prints the main module's docstring and key flags; a console script's own module has neither.
  sys.modules['__main__'].__doc__ = doc
  for flag in flags.FLAGS.get_key_flags_for_module(main.__module__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.call_after_init(quiet_libraries)
  app.run(functools.partial(_one_line_errors, main), flags_parser=parse_flags)


def apply_overrides(config, overrides: dict):
  """Sets dotted keys ({'input.image_size': 32}) on `config` as `--config.KEY=VALUE` flags would; returns it."""
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    target = config
    for parent in parents:
      target = target[parent]
    target[leaf] = value
  return config
