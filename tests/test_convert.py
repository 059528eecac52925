"""timm weight import: parity with timm's logits, the weights-only .pth reader, mismatch errors and the CLI.

Fixtures come from tools/make_timm_fixtures.py (timm with random weights); these tests need neither torch nor timm.
"""
import json
import os
import pickle
import zipfile

import jax
import ml_dtypes
import numpy as np
import pytest

import zoo
from tests.helpers import ROOT, one_script_each, run_cli
from zoo import checkpoint
from zoo.convert import ConversionError, from_timm, load_weights
from zoo.convert.readers import read_safetensors, read_torch
from zoo.errors import UserError

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'timm')
with open(os.path.join(FIXTURES, 'models.json')) as _f:
  MODELS = json.load(_f)
SMALL = 'rs_d1111_w0125'  # the fixture that also comes as a .pth
TOLERANCE = 1e-4


def fixture(name, ext):
  return os.path.join(FIXTURES, f'{name}.{ext}')


def logits(model, variables, name):
  """The zoo's eval-mode logits on the fixture's input, and timm's."""
  data = np.load(fixture(name, 'npz'))
  with jax.default_matmul_precision('float32'):  # no TF32 / bf16 passes where an accelerator runs the tests
    out = model.apply(variables, data['input_nchw'].transpose(0, 2, 3, 1), train=False)
  return np.asarray(out), data['logits']


@pytest.mark.slow
@pytest.mark.parametrize('name,scan', [(n, False) for n in MODELS] + [('rs_d3221_w0125', True)])
def test_logits_match_timm(name, scan):
  spec = MODELS[name]
  variables = from_timm(spec['model'], load_weights(fixture(name, 'safetensors')), **spec['model_kwargs'])
  assert set(variables) == {'params', 'batch_stats'}
  assert sum(a.size for a in jax.tree.leaves(variables['params'])) == spec['num_params']  # timm's count
  model = zoo.create_model(spec['model'], scan_blocks=scan, **spec['model_kwargs'])
  ours, timm = logits(model, variables, name)
  assert ours.shape == timm.shape
  assert np.max(np.abs(ours - timm)) <= TOLERANCE
  assert np.max(np.abs(timm[0] - timm[1])) > 100 * TOLERANCE  # the logits depend on the input, not just on fc


@pytest.mark.slow
def test_parity_detects_a_wrong_weight():
  """Every branch counts: the (timm zero-initialised) last BatchNorm of one block changed breaks parity."""
  spec = MODELS[SMALL]
  variables = from_timm(spec['model'], load_weights(fixture(SMALL, 'safetensors')), **spec['model_kwargs'])
  variables['params']['stage4_block0']['conv3']['bn']['scale'] = np.ones_like(
      variables['params']['stage4_block0']['conv3']['bn']['scale'])
  ours, timm = logits(zoo.create_model(spec['model'], **spec['model_kwargs']), variables, SMALL)
  assert np.max(np.abs(ours - timm)) > 100 * TOLERANCE


def test_pth_reads_the_same_arrays_as_safetensors():
  pth, st = load_weights(fixture(SMALL, 'pth')), load_weights(fixture(SMALL, 'safetensors'))
  assert sorted(pth) == sorted(st)
  for key in st:
    assert pth[key].dtype == st[key].dtype and pth[key].shape == st[key].shape, key
    np.testing.assert_array_equal(pth[key], st[key], err_msg=key)


def test_readers_dtypes_views_and_checkpoint_wrappers():
  expected = dict(np.load(fixture('tensors', 'npz')))
  for loaded in (load_weights(fixture('tensors', 'pth')), read_safetensors(fixture('tensors', 'safetensors'))):
    assert sorted(loaded) == sorted(expected)
    assert loaded['bf16'].dtype == ml_dtypes.bfloat16 and loaded['f16'].dtype == np.float16
    for key, want in expected.items():
      got = loaded[key].astype(np.float32) if key == 'bf16' else loaded[key]
      assert got.dtype == want.dtype and got.shape == want.shape, key
      np.testing.assert_array_equal(got, want, err_msg=key)
  # The file is a timm training checkpoint: EMA weights by default, others by key, wrapper prefixes stripped.
  raw = load_weights(fixture('tensors', 'pth'), key='state_dict')
  assert list(raw) == ['f32'] and np.array_equal(raw['f32'], -expected['f32'])
  with pytest.raises(UserError, match="no state dict under 'optimizer'.*epoch, arch, args"):
    load_weights(fixture('tensors', 'pth'), key='optimizer')


def _torch_zip(path, pickled: bytes, storages=None):
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', pickled)
    z.writestr('archive/byteorder', 'little')
    for key, data in (storages or {}).items():
      z.writestr(f'archive/data/{key}', data)
  return str(path)


class _RunsCode:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


def test_pth_that_runs_code_is_refused(tmp_path):
  marker = tmp_path / 'pwned'
  for i, payload in enumerate([pickle.dumps({'w': _RunsCode(marker)}, protocol=2),
                               f'cos\nsystem\n(S"touch {marker}"\ntR.'.encode(),
                               f'cbuiltins\nexec\n(S"open(\'{marker}\', \'w\')"\ntR.'.encode()]):
    path = _torch_zip(tmp_path / f'evil{i}.pth', payload)
    with pytest.raises(UserError, match=r'refusing to load .* references ((posix|nt|os)\.system|builtins\.exec)'):
      load_weights(path)
  assert not marker.exists()


def test_pth_tensor_outside_its_storage_is_refused(tmp_path):
  """A tensor whose strides reach past its storage would read foreign memory: refused, not viewed."""
  pickled = (b'ctorch._utils\n_rebuild_tensor_v2\n('
             b'(Vstorage\nctorch\nFloatStorage\nV0\nVcpu\nI4\ntQ'  # persistent id: 4 floats in data/0
             b'I0\n(I2\nI2\nt(I1000\nI1\nt'  # offset 0, size (2, 2), stride (1000, 1)
             b'I00\nccollections\nOrderedDict\n)RtR.')
  path = _torch_zip(tmp_path / 'strided.pth', pickled, {'0': np.zeros(4, np.float32).tobytes()})
  with pytest.raises(UserError, match='reaches element 1001 of a storage of 4'):
    read_torch(path)


def test_unreadable_files(tmp_path):
  with pytest.raises(UserError, match='not found'):
    load_weights(tmp_path / 'missing.safetensors')
  (tmp_path / 'w.npz').write_bytes(b'')
  with pytest.raises(UserError, match="unknown weights format 'w.npz'"):
    load_weights(tmp_path / 'w.npz')
  (tmp_path / 'legacy.pth').write_bytes(pickle.dumps({'a': 1}))
  with pytest.raises(UserError, match='is a pickle but not a torch file'):
    load_weights(tmp_path / 'legacy.pth')
  (tmp_path / 'text.pth').write_bytes(b'hello')
  with pytest.raises(UserError, match='is not a torch file: neither a zip archive nor a pickle'):
    load_weights(tmp_path / 'text.pth')
  with open(os.path.join(ROOT, 'tests', 'fixtures', 'pnp', 'dncnn.pth'), 'rb') as f:  # torch's legacy format
    (tmp_path / 'cut.pth').write_bytes(f.read()[:20000])
  with pytest.raises(UserError, match=r'cannot read .*cut.pth \(truncated or corrupt\?\)'):
    load_weights(tmp_path / 'cut.pth')


@pytest.fixture(scope='module')
def small_weights():
  return load_weights(fixture(SMALL, 'safetensors'))


def _convert_error(weights, **overrides):
  kwargs = {**MODELS[SMALL]['model_kwargs'], **overrides}
  with pytest.raises(ConversionError) as e:
    from_timm('resnetrs50', weights, **kwargs)
  return str(e.value)


def test_mismatch_names_missing_unexpected_and_misshapen_keys(small_weights):
  weights = dict(small_weights)
  del weights['layer2.0.se.fc1.bias']
  weights['head.weight'] = np.zeros((10, 256), np.float32)
  weights['layer1.0.conv2.weight'] = np.zeros((8, 4, 3, 3), np.float32)
  msg = _convert_error(weights)
  assert '1 missing, 1 unexpected, 1 with the wrong shape' in msg
  assert 'missing: layer2.0.se.fc1.bias\n' in msg
  assert 'unexpected: head.weight\n' in msg
  assert 'wrong shape: layer1.0.conv2.weight: expected (8, 8, 3, 3), got (8, 4, 3, 3)' in msg


def test_mismatch_of_num_classes_and_depth_suggests_the_fitting_model(small_weights):
  msg = _convert_error(small_weights, num_classes=1000)
  assert 'fc.weight: expected (1000, 256), got (10, 256)' in msg and 'fc.bias: expected (1000,), got (10,)' in msg
  assert 'looks like resnetrs50(stage_depths=(1, 1, 1, 1), width_multiplier=0.125, num_classes=10)' in msg
  msg = _convert_error(small_weights, stage_depths=(1, 2, 1, 1))
  assert 'missing: layer2.1.bn1.{bias,running_mean,running_var,weight}' in msg


def test_full_size_timm_layouts():
  """timm's resnetrs50 state dict fits resnetrs50 exactly; resnetrs101's is refused, and recognised."""
  with open(os.path.join(FIXTURES, 'full_size_shapes.json')) as f:
    shapes = json.load(f)
  rs50 = {k: np.zeros(s, np.float32) for k, s in shapes['resnetrs50'].items()}
  variables = from_timm('resnetrs50', rs50)
  assert sum(a.size for a in jax.tree.leaves(variables['params'])) == sum(
      a.size for k, a in rs50.items() if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked')))
  rs101 = {k: np.zeros(s, np.float32) for k, s in shapes['resnetrs101'].items()}
  with pytest.raises(ConversionError, match=r'(?s)\d+ unexpected.*unexpected: layer3\.6\.bn1\..*'
                                            r'looks like resnetrs101\(num_classes=1000\)'):
    from_timm('resnetrs50', rs101)
  with pytest.raises(UserError, match="no timm weights mapping for 'vit_tiny'; convertible models: resnetrs101"):
    from_timm('vit_tiny', rs50)


@pytest.mark.slow
def test_cli_writes_a_checkpoint_that_gives_timm_logits(tmp_path):
  spec = MODELS[SMALL]
  out = tmp_path / 'converted'
  args = ['--model', 'resnetrs50', '--weights', fixture(SMALL, 'pth'), '--out', str(out),
          f'--model_kwargs={json.dumps(spec["model_kwargs"])}']
  rc, stdout, stderr = run_cli('-m zoo.convert', *args, devices=1, timeout=120)
  assert rc == 0, stderr
  assert 'wrote' in stdout
  mngr = checkpoint.manager(str(out), read_only=True)
  assert mngr.all_steps() == [0]
  state = checkpoint.restore_state(mngr, 0)
  config = checkpoint.restore_config(mngr, 0)
  mngr.close()
  assert set(state) == {'params', 'batch_stats'}
  assert config['model'] == 'resnetrs50' and config['model_kwargs'] == spec['model_kwargs']
  ours, timm = logits(zoo.create_model('resnetrs50', **spec['model_kwargs']), state, SMALL)
  assert np.max(np.abs(ours - timm)) <= TOLERANCE
  # Converting into the same directory again would overwrite it: refused.
  rc, _, stderr = run_cli('-m zoo.convert', *args, devices=1, timeout=120)
  assert rc != 0 and 'already holds checkpoints' in _error_line(stderr)


def _error_line(stderr):
  """The CLI's one error line: no traceback, exactly one line that starts with 'error:'."""
  assert 'Traceback' not in stderr, stderr
  lines = [line for line in stderr.splitlines() if line.startswith('error:')]
  assert len(lines) == 1, stderr
  return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize('script,args,message', one_script_each(['zoo-convert', '-m zoo.convert'], [
    (['--model', 'resnetrs5', '--weights', 'x.pth'], "error: Unknown model 'resnetrs5'. Did you mean resnetrs50"),
    (['--model', 'resnetrs50', '--weights', 'nowhere.pth'], 'error: weights file nowhere.pth not found'),
    (['--model', 'resnetrs50', '--weights', os.path.join(FIXTURES, 'models.json')], 'error: unknown weights format'),
    (['--model', 'resnetrs50', '--weights', fixture(SMALL, 'safetensors')],
     'error: the weights do not fit resnetrs50(): 228 missing, 118 with the wrong shape'),
    (['--model', 'resnetrs50', '--weights', 'x.pth', '--model_kwargs={"depth": 51}'],
     'error: ResNet-RS depth 51 is not published'),
]))
def test_cli_errors_in_one_line(tmp_path, args, message, script):
  rc, _, stderr = run_cli(script, *args, '--out', str(tmp_path / 'out'), devices=1, timeout=120)
  assert rc == 1
  assert _error_line(stderr).startswith(message), stderr
  assert not (tmp_path / 'out' / 'checkpoints').exists()


@pytest.mark.slow
def test_eval_py_evaluates_a_converted_checkpoint(tmp_path):
  """`python -m zoo.convert` then `eval.py`: the printed loss is the converted model's, on the eval split. The folder
  has no training split and fewer images than a batch: evaluating needs neither. A folder of another class count is
  one error line, before anything compiles."""
  from PIL import Image

  from tests.helpers import tiny_config
  from zoo.data import pipeline
  from zoo.tasks.classification import ClassificationTask
  spec = MODELS[SMALL]
  rng = np.random.default_rng(0)
  for c in range(10):
    d = tmp_path / 'images' / 'test' / f'class{c}'
    d.mkdir(parents=True)
    for i in range(3):
      Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / f'{i}.png')
  out = str(tmp_path / 'converted')
  rc, _, stderr = run_cli('-m zoo.convert', '--model', 'resnetrs50', '--weights', fixture(SMALL, 'safetensors'),
                          '--out', out, f'--model_kwargs={json.dumps(spec["model_kwargs"])}', devices=1, timeout=120)
  assert rc == 0, stderr
  overrides = ['--config.dataset=image_folder', f'--config.data_dir={tmp_path / "images"}',
               '--config.eval_split=test', '--config.input.channels=3',
               '--config.input.mean=(124.0,116.0,104.0)', '--config.input.std=(58.0,57.0,57.0)',
               '--config.model_kwargs.width_multiplier=0.125', '--config.batch_size=64']
  rc, stdout, stderr = run_cli('eval.py', '--config=configs/quickstart.py', f'--workdir={out}', *overrides,
                               '--image_size=36', devices=1, timeout=300)
  assert rc == 0, stderr[-3000:]
  printed = json.loads(stdout.strip().splitlines()[-1])
  assert printed['step'] == 0 and printed['ema'] is False  # converted weights carry no EMA
  c = tiny_config(str(tmp_path / 'images'), dataset='image_folder', train_split='test', eval_split='test')
  c.input.channels, c.input.mean, c.input.std = 3, (124.0, 116.0, 104.0), (58.0, 57.0, 57.0)
  task = ClassificationTask(c)
  batch = next(pipeline.eval_batches(task.data, c, 'test', 30, image_size=36))
  variables = from_timm('resnetrs50', load_weights(fixture(SMALL, 'safetensors')), **spec['model_kwargs'])
  out_logits = zoo.create_model('resnetrs50', **spec['model_kwargs']).apply(variables, task.images(batch))
  loss = -np.mean(jax.nn.log_softmax(out_logits)[np.arange(30), batch['label']])
  np.testing.assert_allclose(printed['loss'], loss, rtol=1e-4)
  for k in range(3):  # three classes where the weights have ten
    d = tmp_path / 'three' / 'test' / f'class{k}'
    d.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / '0.png')
  overrides[1] = f'--config.data_dir={tmp_path / "three"}'
  rc, _, stderr = run_cli('eval.py', '--config=configs/quickstart.py', f'--workdir={out}', *overrides, devices=1,
                          timeout=300)
  assert rc == 1 and 'holds a resnetrs50 with 10 classes but the dataset has 3' in stderr.strip().splitlines()[-1]
