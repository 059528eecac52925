"""Flag parsing for the zoo's command-line tools: bad flags end in one clear line, not a traceback."""
import difflib
import runpy
import sys

from absl import flags


def _last_line(text: str) -> str:
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return lines[-1] if lines else str(text)


def _unknown_key(argv) -> str:
  """Names the first `--config.KEY=...` override that the config file does not define."""
  spec = next(a.split('=', 1)[1] for a in argv if a.startswith('--config='))
  path, _, arg = spec.partition(':')
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


def apply_overrides(config, overrides: dict):
  """Sets dotted keys ({'input.image_size': 32}) on `config` as `--config.KEY=VALUE` flags would; returns it."""
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    target = config
    for parent in parents:
      target = target[parent]
    target[leaf] = value
  return config
