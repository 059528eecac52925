"""zoo-benchmark (benchmark.py): one JSON line per measurement, the FLOPs XLA counts for ResNet-RS-50 at 160, and one
error line for bad input. Runs on the 8 host devices of conftest.py."""
import json

import pytest

from tests.helpers import one_script_each, run_cli
from zoo.commands import benchmark

FIELDS = {'model', 'image_size', 'batch_size', 'mode', 'dtype', 'parallelism', 'backend', 'device', 'devices',
          'images_per_sec', 'images_per_sec_min', 'images_per_sec_max', 'step_s', 'steps', 'compile_s',
          'gflops_per_image', 'achieved_gflops_per_sec', 'peak_gflops_per_sec', 'peak_fraction', 'peak_memory_bytes',
          'model_kwargs', 'xla_flags'}


@pytest.mark.slow
@pytest.mark.parametrize('mode,parallelism,gflops,kwargs', [('infer', 'pmap', (4.3, 4.5), {}),
                                                            ('train', 'shard_map', (13.4, 14.8), {}),
                                                            ('infer', 'pmap', (4.3, 4.5), {'scan_blocks': True})])
def test_resnetrs50_at_160_flops(mode, parallelism, gflops, kwargs):
  """XLA's cost analysis of RS-50 at 160, the batch of 8 split over 8 devices: 4.41 GFLOP per image inference, 13.4
  for forward and backward (a plain model's step); the trainer's step adds the optimiser's and the EMA's elementwise
  work on 35.7 M parameters and the select that rejects a non-finite step (measured: 14.5), here all charged to the
  one image of each device. Scanned blocks are counted from the unrolled lowering (XLA counts a loop body once: 2.7
  GFLOP for the scanned forward itself). Lowered only: nothing of RS-50 is compiled."""
  flops = benchmark.step_flops('resnetrs50', None, 8, mode, 'float32', parallelism, kwargs)
  assert gflops[0] <= flops / 1e9 <= gflops[1]


# A ResNet-RS small enough to compile in seconds: what `measure` reports does not depend on the model's size.
SMALL = {'stage_depths': [1, 1, 1, 1], 'width_multiplier': 0.25}


@pytest.mark.slow
@pytest.mark.parametrize('mode,parallelism', [('infer', 'pmap'), ('train', 'shard_map')])
def test_measure_reports_consistent_numbers(mode, parallelism):
  r = benchmark.measure('resnetrs50', 32, 8, mode, 'float32', parallelism, steps=3, warmup=1, model_kwargs=SMALL)
  assert set(r) == FIELDS
  assert (r['image_size'], r['devices'], r['backend'], r['peak_memory_bytes'], r['steps']) == (32, 8, 'cpu', None, 3)
  flops = benchmark.step_flops('resnetrs50', 32, 8, mode, 'float32', parallelism, SMALL)
  # Up to the rounding of the printed numbers: 4 significant digits, images_per_sec to 0.01, step_s to 0.0001.
  assert r['gflops_per_image'] == pytest.approx(flops / 1e9, rel=1e-3)  # one image per device
  assert 0 < r['images_per_sec_min'] <= r['images_per_sec'] <= r['images_per_sec_max']
  assert r['step_s'] == pytest.approx(8 / r['images_per_sec'], rel=0.01, abs=1e-4)
  assert r['achieved_gflops_per_sec'] == pytest.approx(r['gflops_per_image'] * r['images_per_sec'], rel=0.01)
  assert r['peak_fraction'] == pytest.approx(r['achieved_gflops_per_sec'] / r['peak_gflops_per_sec'], rel=0.01)
  assert 0 < r['peak_fraction'] < 1.5 and r['compile_s'] > 0


def test_default_resolutions_and_classifiers():
  """The classifiers are the models whose card says so; each is measured by default at its card's input size, with
  its card's recipe at that size."""
  assert benchmark.classifiers() == ['resnetrs101', 'resnetrs152', 'resnetrs200', 'resnetrs270', 'resnetrs350',
                                     'resnetrs420', 'resnetrs50', 'volo_d1', 'volo_d2', 'volo_d3', 'volo_d4',
                                     'volo_d5']
  configs = {m: benchmark.family_config(m, None) for m in benchmark.classifiers()}
  assert {m: size for m, (_, size) in configs.items()} == {
      'resnetrs50': 160, 'resnetrs101': 192, 'resnetrs152': 256, 'resnetrs200': 256, 'resnetrs270': 256,
      'resnetrs350': 288, 'resnetrs420': 320, 'volo_d1': 224, 'volo_d2': 224, 'volo_d3': 224, 'volo_d4': 224,
      'volo_d5': 224}
  assert all((c.model, c.input.image_size) == (m, size) for m, (c, size) in configs.items())
  config, size = benchmark.family_config('resnetrs152', 192)
  assert (config.input.image_size, size, config.model_kwargs.dropout_rate) == (192, 192, 0.25)
  config, _ = benchmark.family_config('volo_d3', 448)
  assert (config.input.image_size, config.input.crop_pct) == (448, 1.0)


@pytest.mark.slow
def test_cli_prints_one_json_line():
  small = {'layers': [1, 1, 1, 1], 'embed_dims': [32, 64, 64, 64], 'num_heads': [2, 2, 2, 2], 'stem_hidden_dim': 16}
  code, out, err = run_cli('benchmark.py', '--model=volo_d1', '--image_size=32', '--batch_size=2', '--steps=2',
                           '--warmup=1', '--dtype=bfloat16', f'--model_kwargs={json.dumps(small)}', devices=2)
  assert code == 0, err[-2000:]
  result = json.loads(out.strip())
  assert (result['model'], result['image_size'], result['dtype'], result['devices']) == ('volo_d1', 32, 'bfloat16', 2)
  assert result['model_kwargs'] == small and result['steps'] == 2


@pytest.mark.slow
@pytest.mark.parametrize('script,args,message', one_script_each(['zoo-benchmark', 'benchmark.py'], [
    (['--model=resnet50'], "Unknown model 'resnet50'"),
    (['--model=pdnet'], 'measures the classifiers'),
    (['--batch_size=6'], 'not divisible by the number of devices (4)'),
    (['--model=volo_d1', '--image_size=200'], 'must be a positive multiple of 16'),
    (['--mode=fit'], '--mode must be one of'),
    (['--model_kwargs={"colour": 1}'], "does not accept colour"),
    (['--model_kwargs=scan'], 'must be a JSON object'),
]))
def test_bad_input_is_one_error_line(script, args, message):
  code, out, err = run_cli(script, *args, devices=4)
  assert code != 0 and message in err.strip().splitlines()[-1], err[-2000:]


@pytest.mark.slow
def test_profile_step_sums_the_trace_by_operation(tmp_path):
  """tools/profile_step.py traces benchmark.py's training step and sums the device events by kind of operation:
  a ResNet-RS step runs convolutions or dots (the XLA flag turns 1x1 convolutions into dots) and fusions."""
  code, out, err = run_cli('tools/profile_step.py', '--model=resnetrs50', '--image_size=32', '--batch_size=2',
                           '--model_kwargs={"stage_depths": [1, 1, 1, 1], "width_multiplier": 0.25}', '--top=100',
                           f'--trace_dir={tmp_path}', devices=2)
  assert code == 0, err[-2000:]
  lines = out.strip().splitlines()
  assert lines[0].startswith('resnetrs50 train, batch 2') and lines[-1].endswith('kinds')
  rows = [line.split() for line in lines[1:-1]]
  assert all(len(row) == 3 for row in rows), 'a runtime event (its name has a space) counted as an operation'
  kinds = [kind for _, _, kind in rows]
  assert len(set(kinds)) == len(kinds) == int(lines[-1].split()[-2])
  assert any('conv' in k or k == 'dot' or k.startswith('ynn') for k in kinds)
  assert any(k.endswith('fusion') for k in kinds) and all(float(ms) >= 0 for ms, _, _ in rows)
  assert float(lines[-1].split()[0]) == pytest.approx(sum(float(ms) for ms, _, _ in rows), abs=0.005 * len(rows))
  assert list(tmp_path.glob('**/*.xplane.pb'))


@pytest.mark.slow
def test_input_mode_times_the_training_input_of_a_synthetic_folder(tmp_path):
  """--mode=input --synthetic writes the JPEG folder, times the recipe's input on it and prints one JSON line; a
  second --synthetic into the same, now full, folder is refused in one line, and the folder is left as it was."""
  folder = tmp_path / 'images'
  args = ['--mode=input', '--model=volo_d1', '--image_size=64', '--batch_size=8', '--steps=2', '--repeats=2',
          '--threads=1', f'--data_dir={folder}']
  rc, out, err = run_cli('zoo-benchmark', *args, '--synthetic=24', timeout=120)
  assert rc == 0, err[-2000:]
  result = json.loads(out.strip().splitlines()[-1])
  assert (result['mode'], result['image_size'], result['batch_size'], result['threads']) == ('input', 64, 8, 1)
  assert result['randaugment'] == [2, 9, 0.5] and result['random_erasing'] == 0.25  # the VOLO recipe's
  assert result['images_per_sec_min'] <= result['images_per_sec'] <= result['images_per_sec_max']
  assert result['images_per_sec'] > 0 and result['images_per_sec_per_worker'] == result['images_per_sec']
  files = sorted(folder.glob('train/*/*.jpg'))
  assert len(files) == 24 and len({f.parent for f in files}) == 10
  before = {f: f.stat().st_mtime_ns for f in files}
  rc, _, err = run_cli('zoo-benchmark', *args, '--synthetic=24', timeout=120)
  assert rc == 1 and f'{folder} exists and is not empty' in err.strip().splitlines()[-1]
  assert {f: f.stat().st_mtime_ns for f in sorted(folder.glob('train/*/*.jpg'))} == before
