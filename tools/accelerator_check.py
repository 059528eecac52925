"""The accelerator check: one short run on a machine with a GPU (or TPU) and jax's accelerator wheels.

  python tools/accelerator_check.py --export_workdir=DIR [--out=FILE.json]

1. The quickstart training on the accelerator (`train.py --config=configs/quickstart.py`), reporting its EMA top-1
   and wall time (its input is grain's: no TensorFlow needed).
2. `benchmark.py` for ResNet-RS-50@160 and VOLO-D1@224, train and infer, bfloat16, global batch 128: images/s,
   compile time, and the fraction of a square bfloat16 matmul's FLOP/s measured in the same process (MFU).
3. An export round trip of the classification checkpoint in `--export_workdir` (any trained or converted one):
   `export.py --batch_polymorphic`, then the artifact is deserialised with jax alone and called on the accelerator
   at batches 1, 3 and 8; its logits are compared with the zoo model's own forward on the host CPU.

Prints one markdown table at the end (and writes every measurement to `--out` as JSON). Each step runs in a child
process, so one failure is reported in its row and the rest still run.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string('export_workdir', None, 'A classification workdir (train.py or zoo.convert output) to export.')
flags.DEFINE_string('out', None, 'Where to write the results as JSON.')
flags.DEFINE_integer('steps', 20, 'Timed calls per benchmark.')
flags.DEFINE_integer('quickstart_steps', 0, 'Training steps of the quickstart; 0: its config (15 epochs).')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = [('resnetrs50', 160), ('volo_d1', 224)]

ROUND_TRIP = '''
import json, runpy, sys
import jax, numpy as np
out, workdir = sys.argv[1], sys.argv[2]
forward = runpy.run_path(out + '/load.py')['load'](out)  # on the default device: the accelerator
meta = json.load(open(out + '/export.json'))
images = np.random.default_rng(0).standard_normal((8, meta['image_size'], meta['image_size'], meta['channels']))
images = images.astype(np.float32)
accelerator = jax.devices()[0]
on_device = {n: np.asarray(forward(jax.device_put(images[:n], accelerator))) for n in (1, 3, 8)}
import zoo
from zoo import checkpoint
config, live = checkpoint.load_variables(workdir, 'classification', train_hint='train.py')
model = zoo.create_model(config['model'], **{**config['model_kwargs'], 'num_classes': meta['model_kwargs']['num_classes']})
cpu = jax.devices('cpu')[0]
reference = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(jax.device_put(live, cpu),
                                                                            jax.device_put(images, cpu)))
err = max(float(np.abs(on_device[n] - reference[:n]).max()) for n in on_device)
print(json.dumps({'platform': accelerator.platform, 'batches': sorted(on_device), 'max_abs_diff_vs_cpu': err,
                  'logit_scale': float(np.abs(reference).max())}))
'''


def run(args, timeout=600):
  """(exit code, stdout, stderr, seconds) of a child Python process in the repository root."""
  t = time.perf_counter()
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
  return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t


def last_json(stdout: str) -> dict:
  return json.loads([line for line in stdout.splitlines() if line.startswith('{')][-1])


def failure(stderr: str) -> str:
  lines = [line for line in stderr.splitlines() if line.strip()]
  return lines[-1][:200] if lines else 'failed without output'


def quickstart(tmp: str) -> dict:
  workdir = os.path.join(tmp, 'quickstart')
  extra = [f'--config.num_train_steps={FLAGS.quickstart_steps}'] if FLAGS.quickstart_steps else []
  code, _, err, seconds = run(['train.py', '--config=configs/quickstart.py', f'--workdir={workdir}', *extra])
  if code:
    return {'status': f'failed: {failure(err)}'}
  code, out, err, _ = run(['eval.py', '--config=configs/quickstart.py', f'--workdir={workdir}'])
  if code:
    return {'status': f'eval failed: {failure(err)}'}
  return {'status': 'ok', 'top1': last_json(out)['top1'], 'train_s': round(seconds, 1)}


def benchmark(model: str, size: int, mode: str) -> dict:
  code, out, err, _ = run(['benchmark.py', f'--model={model}', f'--image_size={size}', '--batch_size=128',
                           '--dtype=bfloat16', f'--mode={mode}', f'--steps={FLAGS.steps}', '--warmup=3'])
  return last_json(out) if code == 0 else {'model': model, 'mode': mode, 'status': f'failed: {failure(err)}'}


def export_round_trip(tmp: str) -> dict:
  if not FLAGS.export_workdir:
    return {'status': 'skipped: no --export_workdir'}
  out = os.path.join(tmp, 'export')
  code, _, err, _ = run(['export.py', f'--workdir={FLAGS.export_workdir}', f'--out={out}', '--batch_polymorphic'])
  if code:
    return {'status': f'export failed: {failure(err)}'}
  code, stdout, err, _ = run(['-c', ROUND_TRIP, out, FLAGS.export_workdir])
  return {'status': 'ok', **last_json(stdout)} if code == 0 else {'status': f'round trip failed: {failure(err)}'}


def table(results: dict) -> str:
  rows = ['| check | result |', '| --- | --- |']
  q = results['quickstart']
  rows.append('| quickstart training | ' + (f"EMA top-1 {q['top1']:.3f} in {q['train_s']} s" if 'top1' in q
                                            else q['status']) + ' |')
  for b in results['benchmarks']:
    if 'images_per_sec' not in b:
      rows.append(f"| {b['model']} {b['mode']} | {b['status']} |")
      continue
    mfu = f"{b['peak_fraction']:.1%}" if b['peak_fraction'] is not None else 'n/a'
    rows.append(f"| {b['model']}@{b['image_size']} {b['mode']} bf16 b{b['batch_size']} | "
                f"{b['images_per_sec']:.4g} img/s (min {b['images_per_sec_min']:.4g}, max "
                f"{b['images_per_sec_max']:.4g}), compile {b['compile_s']} s, {b['gflops_per_image']} GFLOP/img, "
                f"MFU {mfu} of {b['peak_gflops_per_sec'] / 1e3:.4g} TFLOP/s matmul |")
  e = results['export']
  rows.append('| export round trip | ' + (
      f"{e['platform']}, batches {e['batches']}: max |logit diff| vs CPU {e['max_abs_diff_vs_cpu']:.2e} "
      f"(logits up to {e['logit_scale']:.1f})" if e['status'] == 'ok' else e['status']) + ' |')
  return '\n'.join(rows)


def main(argv):
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments {argv[1:]}')
  import jax
  results = {'date': time.strftime('%Y-%m-%d'), 'jax': jax.__version__, 'device': jax.devices()[0].device_kind,
             'backend': jax.default_backend()}
  print(f"accelerator check: jax {results['jax']}, {results['backend']}, {results['device']}", flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    results['quickstart'] = quickstart(tmp)
    print('quickstart:', results['quickstart'], flush=True)
    results['benchmarks'] = []
    for model, size in BENCHMARKS:
      for mode in ('train', 'infer'):
        results['benchmarks'].append(benchmark(model, size, mode))
        print(json.dumps(results['benchmarks'][-1]), flush=True)
    results['export'] = export_round_trip(tmp)
    print('export:', results['export'], flush=True)
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump(results, f, indent=1)
  print(f"\n{results['date']}, jax {results['jax']}, {results['device']}\n\n{table(results)}")


if __name__ == '__main__':
  app.run(main)
