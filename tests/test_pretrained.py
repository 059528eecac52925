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


def hub_repo(cache, repo_id, weights='rs_d1111_w0125.safetensors', filename='model.safetensors', config=None):
  """A cached snapshot of `repo_id` as huggingface_hub writes it, holding the fixture's weights (none if `weights`
  is None) and a timm config.json (by default the fixture's: a resnetrs50 of 10 classes)."""
  repo = os.path.join(cache, 'models--' + repo_id.replace('/', '--'))
  snapshot = os.path.join(repo, 'snapshots', REVISION)
  os.makedirs(snapshot)
  os.makedirs(os.path.join(repo, 'refs'))
  with open(os.path.join(repo, 'refs', 'main'), 'w') as f:
    f.write(REVISION)
  if weights is not None:
    shutil.copy(os.path.join(FIXTURES, weights), os.path.join(snapshot, filename))
  with open(os.path.join(snapshot, 'config.json'), 'w') as f:
    json.dump(config or {'architecture': 'resnetrs50', 'num_classes': 10, 'pretrained_cfg': {'tag': 'tf_in1k'}}, f)
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
for name in ('resnetrs101', 'resnetrs152'):
  try:
    zoo.load_pretrained(name)
  except UserError as e:
    results[name] = str(e)
print(json.dumps(results))
'''


@pytest.mark.slow
def test_a_filled_cache_gives_the_published_weights_offline(tmp_path):
  """By name (the card's timm/resnetrs50.tf_in1k) and by hub id, in a process with HF_HUB_OFFLINE=1 and the cache
  in tmp: the fixture's timm logits. A repository the cache lacks, or whose weights it lacks, is one error line that
  names the missing file and the command that fetches it."""
  cache = str(tmp_path / 'hub')
  hub_repo(cache, 'timm/resnetrs50.tf_in1k')
  hub_repo(cache, 'timm/resnetrs152.tf_in1k', weights=None)  # config.json only
  env = dict(os.environ, HF_HUB_CACHE=cache, HF_HUB_OFFLINE='1')
  rc, out, err = run_cli('-c', OFFLINE, env=env, timeout=120)
  assert rc == 0, err[-3000:]
  results = json.loads(out.splitlines()[-1])
  assert results['resnetrs50'] <= 1e-4 and results['hf-hub:timm/resnetrs50.tf_in1k'] <= 1e-4, results
  for name, missing in (('resnetrs101', 'config.json'), ('resnetrs152', 'model.safetensors')):
    assert results[name].startswith(f'timm/{name}.tf_in1k/{missing} is not in the Hugging Face cache ({cache}) and '
                                    'HF_HUB_OFFLINE is set: fetch it where there is network with `hf download '
                                    f'timm/{name}.tf_in1k config.json model.safetensors`'), results[name]


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
  with pytest.raises(UserError, match="'nothing/here' is no registered model, published tag, hub id"):
    zoo.load_pretrained('nothing/here')
  with pytest.raises(UserError, match="'resnetrs5' is no registered model.*; close matches: resnetrs50"):
    zoo.load_pretrained('resnetrs5')
  with pytest.raises(UserError, match='close matches: volo_d5_512.sail_in1k'):
    zoo.load_pretrained('volo_d5_521.sail_in1k')
  with pytest.raises(UserError, match=f'weights file {tmp_path}/gone.pth not found'):
    zoo.load_pretrained(str(tmp_path / 'gone.pth'), model='resnetrs50')
  # A truncated download: one line, from the safetensors reader and from the torch reader.
  for name, message in (('rs_d1111_w0125.safetensors', 'not a valid safetensors file'),
                        ('rs_d1111_w0125.pth', 'is truncated or corrupt')):
    with open(os.path.join(FIXTURES, name), 'rb') as f:
      head = f.read()[:5000]
    truncated = tmp_path / name
    truncated.write_bytes(head)
    with pytest.raises(UserError, match=f'{truncated}.* {message}'):
      zoo.load_pretrained(str(truncated), model='resnetrs50')
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
  """Each family's published-weights evaluation (the input size, crop and interpolation of pretrained.PUBLISHED and
  the cards, mean and std of the cards) on scikit-image's photographs: timm's resolve_data_config + create_transform
  output (tools/make_timm_fixtures.py --preprocessing, de-normalised to its uint8 pixels) within 1/255 per pixel
  (measured: equal), also where a crop_pct above 1 pads (VOLO-D4 at 448)."""
  from skimage import data
  from zoo import pretrained
  expected = np.load(os.path.join(FIXTURES, 'preprocessing.npz'))
  with open(os.path.join(FIXTURES, 'preprocessing.json')) as f:
    configs = json.load(f)['configs']
  published = {p.tag.split('.')[0]: p for p in pretrained.PUBLISHED}
  for timm_name in ('resnetrs50', 'volo_d1_224', 'volo_d4_448'):
    card, config = zoo.model_card(published[timm_name].model), configs[timm_name]
    prep = pretrained.Preprocessing(published[timm_name].input_size, published[timm_name].crop_pct,
                                    card.interpolation, card.mean, card.std)
    assert (prep.input_size, prep.crop_pct, prep.interpolation) == (config['input_size'][1], config['crop_pct'],
                                                                    config['interpolation'])
    assert (list(prep.mean), list(prep.std)) == (config['mean'], config['std'])
    for photo in ('chelsea', 'coffee', 'astronaut'):
      if f'{timm_name}/{photo}' in expected:
        ours = prep(getattr(data, photo)())
        difference = np.abs(ours.astype(int) - expected[f'{timm_name}/{photo}'])
        assert ours.shape == (prep.input_size, prep.input_size, 3) and difference.max() <= 1, (timm_name, photo)


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


def test_every_cards_weights_are_published_with_their_input():
  """The card's default weights are in pretrained.PUBLISHED with the card's input size and crop; every published
  tag resolves to its model (a VOLO at another size with that image_size) and its own evaluation input, from the
  tag or its config.json's pretrained_cfg, which wins."""
  from zoo import pretrained
  tags = {p.tag: p for p in pretrained.PUBLISHED}
  for name in zoo.list_models():
    card = zoo.model_card(name)
    if card.timm_name:
      published = tags[card.timm_name]
      assert (published.model, published.input_size, published.crop_pct) == (name, card.input_size, card.crop_pct)
  assert len(tags) == 18 and all(p.model in zoo.list_models() for p in tags.values())


def test_a_hub_folder_gives_the_weights_evaluation_input(tmp_path):
  from zoo import pretrained
  weights = pretrained.resolve(hub_repo(str(tmp_path / 'a'), 'timm/x', config={
      'architecture': 'volo_d4_448', 'num_classes': 1000, 'pretrained_cfg': {'tag': 'sail_in1k'}}))
  assert (weights.model, weights.overrides) == ('volo_d4', {'num_classes': 1000, 'image_size': 448})
  assert weights.preprocessing == pretrained.Preprocessing(448, 1.15, 'bicubic', zoo.registry.IMAGENET_MEAN,
                                                           zoo.registry.IMAGENET_STD)
  weights = pretrained.resolve(hub_repo(str(tmp_path / 'b'), 'timm/y', config={
      'architecture': 'resnetrs50', 'pretrained_cfg': {'input_size': [3, 224, 224], 'crop_pct': 1.0,
                                                      'interpolation': 'bilinear', 'mean': [0.5] * 3,
                                                      'std': [0.25] * 3}}))
  assert weights.preprocessing == pretrained.Preprocessing(224, 1.0, 'bilinear', (0.5,) * 3, (0.25,) * 3)
  config = pretrained.checkpoint_config(weights, {}, 'here')
  assert config['input'] == {'image_size': 224, 'channels': 3, 'crop_pct': 1.0, 'interpolation': 'bilinear',
                             'mean': [127.5] * 3, 'std': [63.75] * 3}


def test_the_imagenet_class_index_is_the_standard_order(tmp_path):
  """The shipped index (tools/make_imagenet_classes.py) is TFDS's imagenet2012 label order, names included; an
  image folder of a few synset folders gets their ImageNet labels; bad index files are one line."""
  import importlib.util
  from zoo.data import sources
  labels = os.path.join(os.path.dirname(importlib.util.find_spec('tensorflow_datasets').origin), 'datasets',
                        'imagenet2012', 'labels.txt')
  with open(labels) as f:
    tfds_order = f.read().split()
  index = sources.read_class_index('imagenet')
  assert [name for name, _ in index] == tfds_order and len(index) == 1000
  assert index[281] == ('n02123045', 'tabby, tabby cat') and index[0] == ('n01440764', 'tench, Tinca tinca')
  for synset in ('n15075141', 'n01443537'):
    os.makedirs(tmp_path / 'val' / synset)
    (tmp_path / 'val' / synset / 'a.png').write_bytes(b'not decoded here')
  folder = sources.open_dataset('image_folder', str(tmp_path), 'imagenet')
  assert folder.num_classes == 1000 and [label for _, label in folder.files('val')] == [1, 999]
  os.makedirs(tmp_path / 'val' / 'not_a_synset')
  with pytest.raises(UserError, match='class folders that the class index does not list: not_a_synset'):
    sources.open_dataset('image_folder', str(tmp_path), 'imagenet')
  (tmp_path / 'twice.txt').write_text('a\nb\na\n')
  (tmp_path / 'blank.txt').write_text('a\n\nb\n')
  for spec, message in (('twice.txt', r"names a folder twice: \['a'\]"), ('blank.txt', 'has an empty line'),
                        ('none.txt', 'cannot read the class index')):
    with pytest.raises(UserError, match=message):
      sources.read_class_index(str(tmp_path / spec))
  with pytest.raises(UserError, match='class_index is for image folders'):
    sources.open_dataset('mnist5k', None, 'imagenet')


PHOTOS = ('chelsea', 'coffee', 'astronaut')


def photo_predictions(class_count=10):
  """The fixture's probabilities for PHOTOS prepared as the card's weights are evaluated, computed directly."""
  from skimage import data
  from zoo import pretrained
  model, variables = zoo.load_pretrained(os.path.join(FIXTURES, 'rs_d1111_w0125.safetensors'), model='resnetrs50',
                                         **SMALL['model_kwargs'])
  prep = pretrained.resolve(os.path.join(FIXTURES, 'rs_d1111_w0125.safetensors'), model='resnetrs50').preprocessing
  images = prep.normalise(np.stack([prep(getattr(data, p)()) for p in PHOTOS]))
  return np.asarray(jax.nn.softmax(model.apply(variables, images, train=False)))


@pytest.mark.slow
def test_zoo_eval_pretrained_on_an_image_folder_with_a_class_index(tmp_path):
  """`zoo-eval --pretrained` from the offline cache on an image folder of photographs, its two class folders mapped
  onto the weights' 10 classes by a class index: the JSON line's top-1 and loss are those computed directly from
  the weights and their evaluation input. Without the index the class counts differ: one line, before compiling."""
  import cv2
  from skimage import data
  from zoo import evaluation
  probabilities = photo_predictions()
  top = probabilities.argmax(-1)
  other = next(c for c in range(10) if c != top[0])  # the astronaut's folder: never the cat's class
  names = [f'unused{i}' for i in range(10)]
  names[top[0]], names[other] = 'cat', 'astronaut'
  labels = np.array([top[0], top[0], other])
  for photo, folder in zip(PHOTOS, ('cat', 'cat', 'astronaut')):
    os.makedirs(tmp_path / 'images' / 'validation' / folder, exist_ok=True)
    cv2.imwrite(str(tmp_path / 'images' / 'validation' / folder / f'{photo}.png'), getattr(data, photo)()[..., ::-1])
  (tmp_path / 'classes.txt').write_text(''.join(f'{n}\tdescription of {n}\n' for n in names))
  cache = str(tmp_path / 'hub')
  hub_repo(cache, 'timm/resnetrs50.tf_in1k')
  env = dict(os.environ, HF_HUB_CACHE=cache, HF_HUB_OFFLINE='1')
  rc, out, err = run_cli('zoo-eval', '--pretrained=resnetrs50', f'--model_kwargs={json.dumps(KWARGS)}',
                         f'--data_dir={tmp_path / "images"}', f'--class_index={tmp_path / "classes.txt"}',
                         '--batch_size=8', env=env, timeout=180)
  assert rc == 0, err[-2000:]
  metrics = json.loads(out.splitlines()[-1])
  assert metrics['top1'] == pytest.approx(np.mean(top == labels), abs=1e-6)
  assert metrics['loss'] == pytest.approx(-np.mean(np.log(probabilities[np.arange(3), labels])), abs=1e-4)
  assert (metrics['source'], metrics['image_size']) == ('resnetrs50', 160)
  with pytest.raises(UserError, match='holds a resnetrs50 with 10 classes but the dataset has 2: map its folders'):
    evaluation.evaluate_pretrained(os.path.join(FIXTURES, 'rs_d1111_w0125.safetensors'), 'image_folder',
                                   str(tmp_path / 'images'), 'validation', model='resnetrs50',
                                   model_kwargs=SMALL['model_kwargs'])


@pytest.mark.slow
def test_zoo_predict_prints_each_images_top_classes(tmp_path):
  """`zoo-predict` from the offline cache: per image, the top 3 classes and their probabilities as computed
  directly, named by the class index; an image that does not decode is one line."""
  import cv2
  from skimage import data
  probabilities = photo_predictions()
  paths = []
  for photo in PHOTOS:
    paths.append(str(tmp_path / f'{photo}.png'))
    cv2.imwrite(paths[-1], getattr(data, photo)()[..., ::-1])
  (tmp_path / 'classes.txt').write_text(''.join(f'c{i}\tclass number {i}\n' for i in range(10)))
  (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8 not really')
  cache = str(tmp_path / 'hub')
  hub_repo(cache, 'timm/resnetrs50.tf_in1k')
  env = dict(os.environ, HF_HUB_CACHE=cache, HF_HUB_OFFLINE='1')
  args = ('zoo-predict', '--pretrained=resnetrs50', f'--model_kwargs={json.dumps(KWARGS)}', '--top=3',
          f'--class_index={tmp_path / "classes.txt"}')
  rc, out, err = run_cli(*args, *paths, env=env, timeout=120)
  assert rc == 0, err[-2000:]
  lines = out.strip().splitlines()
  assert lines[0::4] == paths
  for i, path in enumerate(paths):
    expected = np.argsort(-probabilities[i])[:3]
    for line, c in zip(lines[4 * i + 1:4 * i + 4], expected):
      probability, text = line.split(None, 1)
      assert text == f'class number {c}  (c{c})'
      assert float(probability) == pytest.approx(probabilities[i, c], abs=1e-4)  # printed to 4 decimals
  rc, _, err = run_cli(*args, str(tmp_path / 'broken.jpg'), env=env, timeout=120)
  assert rc == 1, err[-2000:]
  assert err.strip().splitlines()[-1] == f'error: {tmp_path}/broken.jpg is not an image that OpenCV decodes (13 bytes)'
