"""zoo.load_pretrained: published weights by model name or hub id from a Hugging Face cache with HF_HUB_OFFLINE=1
(no network), from a folder in the hub's layout or a weights file, and one error line for what cannot be loaded.

The cache is written by the tests in the hub's own layout (models--ORG--REPO/snapshots/REV/..., refs/main), from the
small timm fixtures of tests/fixtures/timm (tools/make_timm_fixtures.py), so no test downloads anything.
"""
import json
import os
import shutil

import jax
import numpy as np
import pytest

import zoo
from tests.helpers import ROOT, run_cli
from zoo.convert import ConversionError
from zoo.errors import UserError

FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'timm')
with open(os.path.join(FIXTURES, 'models.json')) as _f:
  SMALL = json.load(_f)['rs_d1111_w0125']
KWARGS = {k: v for k, v in SMALL['model_kwargs'].items() if k != 'num_classes'}  # num_classes: from config.json
REVISION = '0123456789abcdef0123456789abcdef01234567'


def hub_repo(cache, repo_id, weights='rs_d1111_w0125.safetensors', filename='model.safetensors'):
  """A cached snapshot of `repo_id` as huggingface_hub writes it, holding the fixture's weights and a timm
  config.json."""
  repo = os.path.join(cache, 'models--' + repo_id.replace('/', '--'))
  snapshot = os.path.join(repo, 'snapshots', REVISION)
  os.makedirs(snapshot)
  os.makedirs(os.path.join(repo, 'refs'))
  with open(os.path.join(repo, 'refs', 'main'), 'w') as f:
    f.write(REVISION)
  shutil.copy(os.path.join(FIXTURES, weights), os.path.join(snapshot, filename))
  with open(os.path.join(snapshot, 'config.json'), 'w') as f:
    json.dump({'architecture': 'resnetrs50', 'num_classes': 10, 'pretrained_cfg': {'tag': 'tf_in1k'}}, f)
  return snapshot


def max_logit_error(model, variables):
  data = np.load(os.path.join(FIXTURES, 'rs_d1111_w0125.npz'))
  out = model.apply(variables, data['input_nchw'].transpose(0, 2, 3, 1), train=False)
  return float(np.max(np.abs(np.asarray(out) - data['logits'])))


OFFLINE = '''
import json, sys
import zoo
from tests.test_pretrained import KWARGS, max_logit_error
from zoo.errors import UserError
results = {}
for source in ('resnetrs50', 'hf-hub:timm/resnetrs50.tf_in1k'):
  model, variables = zoo.load_pretrained(source, **KWARGS)
  results[source] = max_logit_error(model, variables)
try:
  zoo.load_pretrained('resnetrs101')
except UserError as e:
  results['missing'] = str(e)
print(json.dumps(results))
'''


@pytest.mark.slow
def test_a_filled_cache_gives_the_published_weights_offline(tmp_path):
  """By name (the card's timm/resnetrs50.tf_in1k) and by hub id, in a process with HF_HUB_OFFLINE=1 and the cache
  in tmp: the fixture's timm logits; a repository the cache lacks is one error line that says the hub is offline."""
  cache = str(tmp_path / 'hub')
  hub_repo(cache, 'timm/resnetrs50.tf_in1k')
  env = dict(os.environ, HF_HUB_CACHE=cache, HF_HUB_OFFLINE='1')
  rc, out, err = run_cli('-c', OFFLINE, env=env, timeout=120)
  assert rc == 0, err[-3000:]
  results = json.loads(out.splitlines()[-1])
  assert results['resnetrs50'] <= 1e-4 and results['hf-hub:timm/resnetrs50.tf_in1k'] <= 1e-4, results
  assert 'cannot get timm/resnetrs101.tf_in1k from the Hugging Face hub (HF_HUB_OFFLINE is set' in results['missing']


def test_a_folder_in_the_hubs_layout_and_a_weights_file(tmp_path):
  snapshot = hub_repo(str(tmp_path), 'timm/anything')
  model, variables = zoo.load_pretrained(snapshot, **KWARGS)  # the model from config.json
  assert max_logit_error(model, variables) <= 1e-4
  pth = os.path.join(FIXTURES, 'rs_d1111_w0125.pth')  # read weights-only
  model, variables = zoo.load_pretrained(pth, model='resnetrs50', **SMALL['model_kwargs'])
  assert max_logit_error(model, variables) <= 1e-4
  with pytest.raises(UserError, match=r'is a weights file: name its model too, load_pretrained\(FILE, model=NAME\)'):
    zoo.load_pretrained(pth)


def test_what_cannot_be_loaded_is_one_line(tmp_path):
  with pytest.raises(UserError, match="'nothing/here' is no registered model, hub id"):
    zoo.load_pretrained('nothing/here')
  with pytest.raises(UserError, match='dncnn has no published weights'):
    zoo.load_pretrained('dncnn')
  os.makedirs(tmp_path / 'empty')
  with pytest.raises(UserError, match="holds none of model.safetensors, pytorch_model.bin: not a folder in the hub"):
    zoo.load_pretrained(str(tmp_path / 'empty'))
  # Another model's weights: zoo.convert's report of what the file looks like.
  volo = os.path.join(FIXTURES, 'volo_l1112_e16_32.safetensors')
  with pytest.raises(ConversionError, match='resnetrs50'):
    zoo.load_pretrained(volo, model='resnetrs50')


def test_the_cards_evaluation_transform_is_timms_on_photographs():
  """Each family's published-weights evaluation, from its card (input size, crop, interpolation, mean and std), on
  scikit-image's photographs: timm's resolve_data_config + create_transform output (tools/make_timm_fixtures.py
  --preprocessing, de-normalised to its uint8 pixels) within 1/255 per pixel (measured: equal)."""
  from skimage import data
  from zoo.data import transforms
  expected = np.load(os.path.join(FIXTURES, 'preprocessing.npz'))
  with open(os.path.join(FIXTURES, 'preprocessing.json')) as f:
    configs = json.load(f)['configs']
  for timm_name, zoo_name in (('resnetrs50', 'resnetrs50'), ('volo_d1_224', 'volo_d1')):
    card, config = zoo.model_card(zoo_name), configs[timm_name]
    assert (card.input_size, card.crop_pct, card.interpolation) == (config['input_size'][1], config['crop_pct'],
                                                                    config['interpolation'])
    assert (list(card.mean), list(card.std)) == (config['mean'], config['std'])
    for photo in ('chelsea', 'coffee', 'astronaut'):
      ours = transforms.published_eval_transform(getattr(data, photo)(), card.input_size, card.crop_pct,
                                                 card.interpolation)
      difference = np.abs(ours.astype(int) - expected[f'{timm_name}/{photo}'])
      assert ours.shape == (card.input_size, card.input_size, 3) and difference.max() <= 1, (timm_name, photo)


def test_init_from_reads_published_weights_as_the_runs_model(tmp_path, monkeypatch):
  """`--config.init_from=pretrained:NAME` / `hf-hub:...`: the published weights, read as the run's model with its
  fields (the fixture's small ResNet-RS) but the published classes, which `adapt` then re-initialises."""
  from huggingface_hub import constants
  from zoo import finetune
  from zoo.convert import from_timm, load_weights
  cache = str(tmp_path / 'hub')
  hub_repo(cache, 'timm/resnetrs50.tf_in1k')
  monkeypatch.setattr(constants, 'HF_HUB_CACHE', cache)  # what HF_HUB_CACHE / HF_HUB_OFFLINE set at import
  monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
  reference = from_timm('resnetrs50', load_weights(os.path.join(FIXTURES, 'rs_d1111_w0125.safetensors')),
                        **SMALL['model_kwargs'])
  run_kwargs = {**KWARGS, 'num_classes': 3, 'dtype': 'bfloat16'}  # the run's own classes and compute dtype
  for source in ('pretrained:resnetrs50', 'hf-hub:timm/resnetrs50.tf_in1k'):
    params, batch_stats = finetune.load(source, 'resnetrs50', run_kwargs)
    assert params['head']['kernel'].shape[-1] == 10  # the published head, before adapt
    for got, want in ((params, reference['params']), (batch_stats, reference['batch_stats'])):
      assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)))


@pytest.mark.slow
def test_zoo_convert_pretrained_writes_a_checkpoint_that_zoo_export_exports(tmp_path):
  """`zoo-convert --pretrained` from the offline cache, then `zoo-export` of its output: the converted checkpoint
  carries its task and the card's evaluation input, so the export reads it as a training workdir (it used to fail:
  'holds a None checkpoint'). zoo-export takes one of --workdir and --pretrained, and never an existing --out."""
  cache = str(tmp_path / 'hub')
  hub_repo(cache, 'timm/resnetrs50.tf_in1k')
  env = dict(os.environ, HF_HUB_CACHE=cache, HF_HUB_OFFLINE='1')
  converted, out = str(tmp_path / 'converted'), str(tmp_path / 'export')
  rc, stdout, err = run_cli('zoo-convert', '--pretrained', 'hf-hub:timm/resnetrs50.tf_in1k', '--out', converted,
                            f'--model_kwargs={json.dumps(KWARGS)}', env=env, timeout=120)
  assert rc == 0 and 'from hf-hub:timm/resnetrs50.tf_in1k' in stdout, err[-2000:]
  rc, stdout, err = run_cli('zoo-export', f'--workdir={converted}', f'--out={out}', env=env, timeout=180)
  assert rc == 0, err[-2000:]
  meta = json.loads(stdout.splitlines()[-1])
  assert (meta['model'], meta['image_size'], meta['model_kwargs']['num_classes']) == ('resnetrs50', 160, 10)
  assert meta['mean'] == pytest.approx([123.675, 116.28, 103.53]) and meta['crop_pct'] == 0.91
  for args, message in ((['--pretrained=resnetrs50', f'--workdir={converted}'], 'give one of --workdir'),
                        ([f'--workdir={converted}'], f'{out} exists; zoo-export writes a new directory')):
    rc, _, err = run_cli('zoo-export', *args, f'--out={out}', env=env, timeout=120)
    assert rc == 1 and message in err.strip().splitlines()[-1], err[-1000:]
