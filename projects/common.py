"""What the projects' command lines share: the plug-and-play paper's data directory, config overrides given as
JSON, and the files a run writes."""
import json
import os
import sys

from absl import flags

from zoo.errors import UserError

PNP_DATA_ENV = 'ZOO_PNP_DATA'
PNP_DATA_ORIGIN = ('the plug-and-play paper\'s data (github.com/uclaopt/Provable_Plug_and_Play: train/ = BSD400, '
                   'Set12/, Set68/, Demo_mat/; layout in projects/pnp/README.md)')


def define_shared_flags(data_dir_use: str, workdir: str, train_steps: int, steps_of: str) -> None:
  """--data_dir, --workdir, --train_steps and --config_overrides, defined when a project's script runs (importing a
  project defines no flags)."""
  flags.DEFINE_string('data_dir', None, f'The directory of {PNP_DATA_ORIGIN}; default ${PNP_DATA_ENV}. '
                      f'{data_dir_use}')
  flags.DEFINE_string('workdir', workdir, 'Networks are trained here, or reused when a workdir already holds the '
                      'final checkpoint of the same config.')
  flags.DEFINE_integer('train_steps', train_steps, f'Training steps of each {steps_of}.')
  flags.DEFINE_string('config_overrides', '{}', 'JSON {dotted key: value} applied to every config trained, as '
                      '--config.KEY=VALUE would be, e.g. \'{"batch_size": 64}\'.')


def pnp_data_dir(flag_value: str | None, required: bool) -> str | None:
  """--data_dir, else $ZOO_PNP_DATA; a UserError naming both and the data's origin when `required` and neither is
  set."""
  data_dir = flag_value or os.environ.get(PNP_DATA_ENV) or None
  if required and not data_dir:
    raise UserError(f'give --data_dir=DIR or set {PNP_DATA_ENV}=DIR: {PNP_DATA_ORIGIN}')
  return data_dir


def overrides(text: str) -> dict:
  """The --config_overrides JSON as a dict; bad JSON is a UserError."""
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f'--config_overrides is not JSON ({e}): give e.g. \'{{"batch_size": 64}}\'') from None
  if not isinstance(value, dict):
    raise UserError(f'--config_overrides must be a JSON object {{"dotted.key": value}}, got {text}')
  return value


def conclude(argv, experiment, out: str, figure: str) -> None:
  """A project's run from its `main(argv)`: `experiment()` returns (results, their markdown tables, draw(path) of
  the figure); arguments other than flags, or a UserError from it, end the program with one line. Writes
  results.json (every number of the run), table.md (the tables, which the project's README shows) and the figure
  `figure` to `out`, and prints the tables."""
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}: the script takes only --flags (--helpfull lists them)')
  try:
    results, markdown, draw = experiment()
  except UserError as e:
    sys.exit(f'error: {e}')
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'results.json'), 'w') as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(out, 'table.md'), 'w') as f:
    f.write(markdown + '\n')
  draw(os.path.join(out, figure))
  print(markdown)


def project_dir(module_file: str) -> str:
  """The folder of a project's module: where its results go by default, beside its README."""
  return os.path.dirname(os.path.abspath(module_file))
