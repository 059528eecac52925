"""Published weights in one call: `model, variables = zoo.load_pretrained('resnetrs50')`, as timm's
`create_model(name, pretrained=True)`.

`source` is one of:
- a registered classifier: the weights its card names (`timm_name`, e.g. 'resnetrs50.tf_in1k'), from the Hugging
  Face hub repository `timm/<timm_name>`;
- a published tag of PUBLISHED, with or without its pretrained tag ('volo_d5_512.sail_in1k', 'volo_d5_512');
- 'hf-hub:ORG/REPO' (e.g. 'hf-hub:timm/volo_d1_384.sail_in1k'): the model is the one its config.json's
  'architecture' names ('volo_d1_384': the zoo's volo_d1 at image_size 384);
- a folder in the hub's layout (config.json beside model.safetensors or pytorch_model.bin);
- a weights file (.safetensors, or a torch file read weights-only: no code of the file runs); then `model` names the
  zoo model.

Downloads go through `huggingface_hub` into its standard cache (HF_HUB_CACHE, by default ~/.cache/huggingface/hub):
nothing is fetched twice, and with HF_HUB_OFFLINE=1 a filled cache is all that is read. Safetensors are preferred
where a repository has both. Weights of another model are one error line saying what they look like
(zoo.convert.from_timm). `resolve(source).preprocessing` is the weights' own evaluation input.
"""
import dataclasses
import difflib
import json
import os
import re

import numpy as np

from zoo import registry
from zoo.convert import from_timm, load_weights
from zoo.convert.readers import TORCH_SUFFIXES
from zoo.errors import UserError

HUB_PREFIX = 'hf-hub:'
WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')  # in order of preference, as timm publishes them


@dataclasses.dataclass(frozen=True)
class Published:
  """ImageNet-1k weights that timm publishes on the Hugging Face hub (`timm/<tag>`) and a zoo model holds: their
  evaluation input (side, centre-crop fraction; all resize bicubic and normalise with ImageNet's mean and std) and
  the top-1 (%) their publishers report at that input: timm's measurement of these files (its
  results/results-imagenet.csv) and the authors' (ResNet-RS: Bello et al. 2021's TF1 checkpoints; VOLO: Yuan et al.
  2021); None where the authors have no model at that input."""
  tag: str
  model: str
  input_size: int
  crop_pct: float
  top1_timm: float
  top1_paper: float | None


PUBLISHED = (
    Published('resnetrs50.tf_in1k', 'resnetrs50', 160, 0.91, 77.858, 78.8),
    Published('resnetrs101.tf_in1k', 'resnetrs101', 192, 0.94, 80.706, 81.2),
    Published('resnetrs152.tf_in1k', 'resnetrs152', 256, 1.0, 82.900, 83.0),
    Published('resnetrs200.tf_in1k', 'resnetrs200', 256, 1.0, 83.884, 83.4),
    Published('resnetrs270.tf_in1k', 'resnetrs270', 256, 1.0, 83.596, 83.8),
    Published('resnetrs350.tf_in1k', 'resnetrs350', 288, 1.0, 84.304, None),
    Published('resnetrs420.tf_in1k', 'resnetrs420', 320, 1.0, 84.240, 84.4),
    Published('volo_d1_224.sail_in1k', 'volo_d1', 224, 0.96, 84.148, 84.2),
    Published('volo_d1_384.sail_in1k', 'volo_d1', 384, 1.0, 85.262, 85.2),
    Published('volo_d2_224.sail_in1k', 'volo_d2', 224, 0.96, 85.204, 85.2),
    Published('volo_d2_384.sail_in1k', 'volo_d2', 384, 1.0, 86.054, 86.0),
    Published('volo_d3_224.sail_in1k', 'volo_d3', 224, 0.96, 85.440, 85.4),
    Published('volo_d3_448.sail_in1k', 'volo_d3', 448, 1.0, 86.514, 86.3),
    Published('volo_d4_224.sail_in1k', 'volo_d4', 224, 0.96, 85.868, 85.7),
    Published('volo_d4_448.sail_in1k', 'volo_d4', 448, 1.15, 86.788, 86.8),
    Published('volo_d5_224.sail_in1k', 'volo_d5', 224, 0.96, 86.076, 86.1),
    Published('volo_d5_448.sail_in1k', 'volo_d5', 448, 1.15, 86.974, 87.0),
    Published('volo_d5_512.sail_in1k', 'volo_d5', 512, 1.15, 87.068, 87.1),
)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How weights are evaluated, as timm's data config says: resize the shorter side to input_size / crop_pct with
  `interpolation` (Pillow's), centre crop input_size, then (pixels / 255 - mean) / std per channel."""
  input_size: int
  crop_pct: float
  interpolation: str
  mean: tuple[float, ...]
  std: tuple[float, ...]

  def __call__(self, image: np.ndarray) -> np.ndarray:
    """uint8 [input_size, input_size, C] of a decoded uint8 [H, W, C] image."""
    from zoo.data import transforms
    return transforms.published_eval_transform(image, self.input_size, self.crop_pct, self.interpolation)

  def normalise(self, images: np.ndarray) -> np.ndarray:
    """float32 model input of uint8 images [..., C]."""
    return ((images.astype(np.float32) / 255.0 - np.float32(self.mean)) / np.float32(self.std)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Weights:
  """What `resolve` finds: the zoo model, the create_model overrides the weights imply (their classes, a VOLO's
  image_size), the weights file, and their evaluation input (None for a model that is no classifier)."""
  model: str
  overrides: dict
  path: str
  preprocessing: Preprocessing | None


def load_pretrained(source: str, model: str | None = None, **overrides):
  """(the flax module, its variables {'params', 'batch_stats'} as numpy) of published or local timm weights; see the
  module docstring for `source`. `overrides` are create_model's (num_classes must match the weights')."""
  weights = resolve(source, model)
  return registry.create_model(weights.model, **{**weights.overrides, **overrides}), load(weights, **overrides)


def load(weights: Weights, **overrides) -> dict:
  """The variables {'params', 'batch_stats'} (numpy) of `weights` as their model with `overrides`."""
  return from_timm(weights.model, load_weights(weights.path), **{**weights.overrides, **overrides})


def checkpoint_config(weights: Weights, kwargs: dict, source: str) -> dict:
  """The config saved with converted weights (zoo-convert, zoo-export --pretrained): the model, its overrides, the
  task of its card and the weights' evaluation input (size, RGB, crop, filter, mean and std in the 0..255 units of
  the zoo's configs), so that zoo-eval and zoo-export read it as they read a training workdir."""
  config = {'model': weights.model, 'model_kwargs': dict(kwargs), 'task': registry.model_card(weights.model).task,
             'source': source, 'format': 'timm'}
  p = weights.preprocessing
  if p is not None:
    config['input'] = {'image_size': p.input_size, 'channels': 3, 'crop_pct': p.crop_pct,
                       'interpolation': p.interpolation, 'mean': [255 * m for m in p.mean],
                       'std': [255 * s for s in p.std]}
  return config


def save_converted(out_dir: str, weights: Weights, kwargs: dict, source: str, checkpoint_key: str | None = None) -> str:
  """Converts `weights` into their zoo model (with `kwargs`) and writes them to `out_dir` as a step-0 checkpoint with
  `checkpoint_config`: zoo-convert's output, which zoo-export --pretrained also exports. Returns the checkpoint
  directory; a directory that holds checkpoints is a FileExistsError."""
  from zoo import checkpoint
  variables = from_timm(weights.model, load_weights(weights.path, checkpoint_key), **kwargs)
  return checkpoint.save_pretrained(out_dir, variables, checkpoint_config(weights, kwargs, source))


def resolve(source: str, model: str | None = None) -> Weights:
  """The weights `source` names (module docstring) and what they are; `model` names the zoo model of a weights file
  (and overrides the one a config.json names)."""
  if source.startswith(HUB_PREFIX):
    config, path = _hub_files(source[len(HUB_PREFIX):])
    return _described(config, path, model, source[len(HUB_PREFIX):].split('/')[-1])
  if os.path.isdir(source):
    path = next((os.path.join(source, f) for f in WEIGHT_FILES if os.path.isfile(os.path.join(source, f))), None)
    if path is None:
      raise UserError(f'{source} holds none of {", ".join(WEIGHT_FILES)}: not a folder in the hub\'s layout')
    return _described(os.path.join(source, 'config.json'), path, model, '')
  if os.path.isfile(source):
    if model is None:
      raise UserError(f'{source} is a weights file: name its model too, load_pretrained(FILE, model=NAME)')
    return Weights(model, {}, source, _preprocessing({}, None, model, {}))
  if source in registry.list_models():
    card = registry.model_card(source)
    if card.timm_name is None:
      raise UserError(f'{source} has no published weights (its card names none); pass a weights file or a hub id')
    return resolve(f'{HUB_PREFIX}timm/{card.timm_name}', model or source)
  if source.endswith(('.safetensors', *TORCH_SUFFIXES)):
    raise UserError(f'weights file {source} not found')
  tags = {p.tag: p.tag for p in PUBLISHED} | {p.tag.split('.')[0]: p.tag for p in PUBLISHED}
  if source in tags:
    return resolve(f'{HUB_PREFIX}timm/{tags[source]}', model)
  close = difflib.get_close_matches(source, registry.list_models() + [p.tag for p in PUBLISHED], n=4)
  hint = f'; close matches: {", ".join(close)}' if close else ''
  raise UserError(f'{source!r} is no registered model, published tag, hub id ({HUB_PREFIX}ORG/REPO), folder or weights '
                  f'file{hint}')


def _published(repo_name: str) -> Published | None:
  return next((p for p in PUBLISHED if p.tag == repo_name), None)


def _hub_files(repo_id: str) -> tuple[str, str]:
  """(config.json, weights file) of a hub repository, from the cache or downloaded into it."""
  import huggingface_hub
  from huggingface_hub import constants, errors

  def missing(filename: str, e: Exception) -> UserError:
    if isinstance(e, errors.LocalEntryNotFoundError):  # offline, or the hub cannot be reached
      why = 'HF_HUB_OFFLINE is set' if constants.HF_HUB_OFFLINE else 'the hub cannot be reached'
      return UserError(f'{repo_id}/{filename} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}: '
                       f'fetch it where there is network with `hf download {repo_id} config.json {WEIGHT_FILES[0]}` '
                       '(into that cache, or copy the cache here)')
    return UserError(f'cannot get {repo_id}/{filename} from the Hugging Face hub: {str(e).splitlines()[0]}')

  try:
    config = huggingface_hub.hf_hub_download(repo_id, 'config.json')
  except (errors.LocalEntryNotFoundError, errors.RepositoryNotFoundError, OSError) as e:
    raise missing('config.json', e) from None
  for filename in WEIGHT_FILES:
    try:
      return config, huggingface_hub.hf_hub_download(repo_id, filename)
    except errors.LocalEntryNotFoundError as e:  # (a kind of EntryNotFoundError) published or not: the hub knows
      if filename == WEIGHT_FILES[-1] or not constants.HF_HUB_OFFLINE:
        raise missing(WEIGHT_FILES[0], e) from None
    except errors.EntryNotFoundError:  # not published: the next format
      continue
  raise UserError(f'{repo_id} holds none of {", ".join(WEIGHT_FILES)}')


def _described(config_path: str, path: str, model: str | None, repo_name: str) -> Weights:
  """The Weights of a timm config.json and weights file: its 'architecture' is a zoo model's timm name, or one with
  another input size ('volo_d1_384': volo_d1, image_size=384); `model` wins where given. The evaluation input is
  the config's `pretrained_cfg`, else the PUBLISHED entry of the repository, else the model's card."""
  try:
    with open(config_path) as f:
      config = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise UserError(f'cannot read {config_path}: {e}') from None
  architecture = config.get('architecture', '')
  extra = {'num_classes': config['num_classes']} if 'num_classes' in config else {}
  inferred = next(((name, extra) for name in registry.list_models()
                   if (registry.model_card(name).timm_name or '').split('.')[0] == architecture), None)
  sized = re.fullmatch(r'(.+)_(\d+)', architecture)
  if not inferred and sized and sized[1] in registry.list_models() and 'image_size' in registry.model_fields(sized[1]):
    inferred = sized[1], {**extra, 'image_size': int(sized[2])}
  if model is not None:  # the weights' input size still holds where they are of that model
    name, overrides = model, inferred[1] if inferred and inferred[0] == model else extra
  elif inferred:
    name, overrides = inferred
  else:
    raise UserError(f'{config_path} names architecture {architecture!r}, which no zoo model converts from')
  tag = config.get('pretrained_cfg', {}).get('tag')
  published = _published(repo_name) or _published(f'{architecture}.{tag}')
  return Weights(name, overrides, path, _preprocessing(config.get('pretrained_cfg', {}), published, name, overrides))


def _preprocessing(cfg: dict, published: Published | None, model: str, overrides: dict) -> Preprocessing | None:
  card = registry.model_card(model)
  if card.task != 'classification':
    return None
  size = overrides.get('image_size', published.input_size if published else card.input_size)
  crop = published.crop_pct if published else card.crop_pct
  return Preprocessing(input_size=int(cfg['input_size'][-1]) if 'input_size' in cfg else size,
                       crop_pct=cfg.get('crop_pct', crop or 1.0),
                       interpolation=cfg.get('interpolation', card.interpolation or 'bilinear'),
                       mean=tuple(cfg.get('mean', card.mean or registry.IMAGENET_MEAN)),
                       std=tuple(cfg.get('std', card.std or registry.IMAGENET_STD)))


def eval_config(weights: Weights, dataset: str, data_dir: str | None, split: str, batch_size: int,
                class_index: str | None = None):
  """The ml_collections config that zoo.evaluation evaluates `weights` with on `split` of `dataset`: the
  classification task, the weights' model and their own evaluation input (resize, crop, filter, mean, std)."""
  import ml_collections
  p = weights.preprocessing
  if p is None:
    raise UserError(f'{weights.model} is no classifier: evaluate it with zoo-eval --config=... --workdir=DIR')
  return ml_collections.ConfigDict({
      # num_classes: the data's (or the class index's); zoo.evaluation.check_classes compares it with the weights'
      'task': 'classification', 'model': weights.model,
      'model_kwargs': {k: v for k, v in weights.overrides.items() if k != 'num_classes'},
      'dataset': dataset, 'data_dir': data_dir, 'train_split': split, 'eval_split': split,
      'class_index': class_index, 'batch_size': batch_size, 'parallelism': 'pmap', 'seed': 0,
      'label_smoothing': 0.0,
      'input': {'image_size': p.input_size, 'eval_image_size': 0, 'channels': 3, 'crop_pct': p.crop_pct,
                'interpolation': p.interpolation, 'mean': [255 * m for m in p.mean], 'std': [255 * s for s in p.std],
                'threads': 0, 'corrupt_images': 'skip', 'token_labels': False}})
