"""Where zoo-benchmark's step spends its time: a jax.profiler trace of a few calls, summed by kind of XLA operation.

  python tools/profile_step.py --model=resnetrs50 --mode=train [--batch_size=8] [--calls=3] [--top=15] \
      [--trace_dir=DIR]

Needs the zoo installed (`pip install -e .`). Builds the same compiled step as zoo-benchmark (same flags, same
environment defaults: zoo/cli.py), warms it up, traces `calls` calls and prints one line
per kind of operation (the HLO instruction name without its number: `transpose_copy_fusion`, `convolution`,
`ynn_fusion`, ...): milliseconds per call summed over the device's threads, and how many instructions of that kind
ran. This is how the RS-50 training step's layout copies and the cost of donating its state were found (README,
"Benchmark"). The trace stays in --trace_dir (default: a new temporary directory) for TensorBoard / XProf; run with
XLA_FLAGS=--xla_dump_to=DIR to read the instructions it names.
"""
import collections
import glob
import os
import re
import tempfile

from absl import flags

from zoo import cli
from zoo.commands import benchmark
from zoo.errors import UserError

FLAGS = flags.FLAGS
# Events of the runtime itself (waiting, scheduling, PjRt's execute and input handling), not of an XLA instruction.
# HLO instruction names never contain a space; the runtime's names often do ('Wait: pending_threads=1/2').
RUNTIME_EVENTS = re.compile(r'Thunk|SlinkyThreadPool|\s')


def op_times(trace_dir: str, calls: int) -> list[tuple[str, float, int]]:
  """(kind, ms per call, instructions per call) from the trace's device-side events, slowest kind first."""
  import jax
  path = max(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True), key=os.path.getmtime)
  ms, count = collections.Counter(), collections.Counter()
  for plane in jax.profiler.ProfileData.from_file(path).planes:
    for line in plane.lines:
      # CPU: the XLA thread pool's lines; accelerators: the device planes' op lines.
      if not (line.name.startswith('tf_XLA') or plane.name.startswith('/device:')):
        continue
      for event in line.events:
        if RUNTIME_EVENTS.search(event.name):
          continue
        kind = re.sub(r'\.\d+$', '', event.name)
        ms[kind] += event.duration_ns / 1e6 / calls
        count[kind] += 1
  return [(k, v, count[k] // calls) for k, v in ms.most_common()]


def main(argv):
  if len(argv) > 1:
    raise UserError(f'unexpected arguments {argv[1:]}')
  import json
  import jax
  try:
    kwargs = json.loads(FLAGS.model_kwargs)
  except json.JSONDecodeError as e:
    raise UserError(f'--model_kwargs must be a JSON object: {e}') from None
  compiled, args, advance = benchmark.build(FLAGS.model, FLAGS.image_size or None, FLAGS.batch_size, FLAGS.mode,
                                            FLAGS.dtype, FLAGS.parallelism, kwargs)[:3]
  for _ in range(2):
    args = advance(jax.block_until_ready(compiled(*args)), args)
  trace_dir = FLAGS.trace_dir or tempfile.mkdtemp(prefix='profile_step_')
  with jax.profiler.trace(trace_dir):
    for _ in range(FLAGS.calls):
      args = advance(jax.block_until_ready(compiled(*args)), args)
  rows = op_times(trace_dir, FLAGS.calls)
  print(f'{FLAGS.model} {FLAGS.mode}, batch {FLAGS.batch_size}: ms per call by kind of XLA operation '
        f'(summed over threads; trace in {trace_dir})')
  for kind, ms, n in rows[:FLAGS.top]:
    print(f'{ms:10.2f}  x{n:<5d} {kind}')
  print(f'{sum(r[1] for r in rows):10.2f}  total over {len(rows)} kinds')


if __name__ == '__main__':
  benchmark.define_step_flags(mode='train')
  flags.DEFINE_integer('calls', 3, 'Traced calls (after 2 untraced ones).')
  flags.DEFINE_integer('top', 15, 'Kinds printed.')
  flags.DEFINE_string('trace_dir', '', 'Where the trace is written; default: a new temporary directory.')
  cli.run(main, __doc__)
