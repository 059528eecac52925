"""Published weights in one call: `model, variables = zoo.load_pretrained('resnetrs50')`, as timm's
`create_model(name, pretrained=True)`.

`source` is one of:
- a registered classifier: the weights its card names (`timm_name`, e.g. 'resnetrs50.tf_in1k'), from the Hugging
  Face hub repository `timm/<timm_name>`;
- 'hf-hub:ORG/REPO' (e.g. 'hf-hub:timm/volo_d1_384.sail_in1k'): the model is the one its config.json's
  'architecture' names ('volo_d1_384': the zoo's volo_d1 at image_size 384);
- a folder in the hub's layout (config.json beside model.safetensors or pytorch_model.bin);
- a weights file (.safetensors, or a torch file read weights-only: no code of the file runs); then `model` names the
  zoo model.

Downloads go through `huggingface_hub` into its standard cache (HF_HUB_CACHE, by default ~/.cache/huggingface/hub):
nothing is fetched twice, and with HF_HUB_OFFLINE=1 a filled cache is all that is read. Safetensors are preferred
where a repository has both. Weights of another model are one error line saying what they look like
(zoo.convert.from_timm).
"""
import json
import os
import re

from zoo import registry
from zoo.convert import from_timm, load_weights
from zoo.errors import UserError

HUB_PREFIX = 'hf-hub:'
WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')  # in order of preference, as timm publishes them


def load_pretrained(source: str, model: str | None = None, **overrides):
  """(the flax module, its variables {'params', 'batch_stats'} as numpy) of published or local timm weights; see the
  module docstring for `source`. `overrides` are create_model's (num_classes must match the weights')."""
  name, extra, weights = resolve(source, model)
  overrides = {**extra, **overrides}
  variables = from_timm(name, load_weights(weights), **overrides)
  return registry.create_model(name, **overrides), variables


def checkpoint_config(name: str, kwargs: dict, source: str) -> dict:
  """The config saved with converted weights (zoo-convert, zoo-export --pretrained): the model, its overrides, the
  task of its card and the card's evaluation input (size, RGB, mean and std in the 0..255 units of the zoo's
  configs), so that zoo-eval and zoo-export read it as they read a training workdir."""
  card = registry.model_card(name)
  size = kwargs.get('image_size', card.input_size)
  return {'model': name, 'model_kwargs': dict(kwargs), 'task': card.task, 'source': source, 'format': 'timm',
          'input': {'image_size': size, 'channels': 3, 'crop_pct': card.crop_pct,
                    'mean': [255 * m for m in card.mean or (0.0,) * 3],
                    'std': [255 * s for s in card.std or (1 / 255,) * 3]}}


def save_converted(out_dir: str, name: str, kwargs: dict, weights: str, source: str,
                   checkpoint_key: str | None = None) -> str:
  """Converts the timm weights file `weights` into zoo model `name` (with `kwargs`) and writes them to `out_dir` as
  a step-0 checkpoint with `checkpoint_config`: zoo-convert's output, which zoo-export --pretrained also exports.
  Returns the checkpoint directory; a directory that holds checkpoints is a FileExistsError."""
  from zoo import checkpoint
  variables = from_timm(name, load_weights(weights, checkpoint_key), **kwargs)
  return checkpoint.save_pretrained(out_dir, variables, checkpoint_config(name, kwargs, source))


def resolve(source: str, model: str | None = None) -> tuple[str, dict, str]:
  """(zoo model name, the create_model overrides the weights imply, path of the weights file) of `source`."""
  if source.startswith(HUB_PREFIX):
    folder_files = _hub_files(source[len(HUB_PREFIX):])
    return (*_model_of(folder_files[0], model), folder_files[1])
  if os.path.isdir(source):
    weights = next((os.path.join(source, f) for f in WEIGHT_FILES if os.path.isfile(os.path.join(source, f))), None)
    if weights is None:
      raise UserError(f'{source} holds none of {", ".join(WEIGHT_FILES)}: not a folder in the hub\'s layout')
    return (*_model_of(os.path.join(source, 'config.json'), model), weights)
  if os.path.isfile(source):
    if model is None:
      raise UserError(f'{source} is a weights file: name its model too, load_pretrained(FILE, model=NAME)')
    registry.model_card(model)  # an unknown name is one line
    return model, {}, source
  if source in registry.list_models():
    card = registry.model_card(source)
    if card.timm_name is None:
      raise UserError(f'{source} has no published weights (its card names none); pass a weights file or a hub id')
    return resolve(f'{HUB_PREFIX}timm/{card.timm_name}', model or source)
  raise UserError(f'{source!r} is no registered model, hub id ({HUB_PREFIX}ORG/REPO), folder or weights file')


def _hub_files(repo_id: str) -> tuple[str, str]:
  """(config.json, weights file) of a hub repository, from the cache or downloaded into it."""
  import huggingface_hub
  from huggingface_hub import constants, errors
  try:
    config = huggingface_hub.hf_hub_download(repo_id, 'config.json')
  except (errors.LocalEntryNotFoundError, errors.RepositoryNotFoundError, OSError) as e:
    offline = ' (HF_HUB_OFFLINE is set: only the cache is read)' if constants.HF_HUB_OFFLINE else ''
    raise UserError(f'cannot get {repo_id} from the Hugging Face hub{offline}: {str(e).splitlines()[0]}') from None
  for filename in WEIGHT_FILES:
    try:
      return config, huggingface_hub.hf_hub_download(repo_id, filename)
    except (errors.EntryNotFoundError, errors.LocalEntryNotFoundError):  # not published, or not in the cache
      continue
  raise UserError(f'{repo_id} holds none of {", ".join(WEIGHT_FILES)}')


def _model_of(config_path: str, model: str | None) -> tuple[str, dict]:
  """(zoo model, overrides) that a timm config.json names: its 'architecture' is a zoo model's timm name, or one
  with another input size ('volo_d1_384': volo_d1, image_size=384); `model` wins where given."""
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
    return model, inferred[1] if inferred and inferred[0] == model else extra
  if inferred:
    return inferred
  raise UserError(f'{config_path} names architecture {architecture!r}, which no zoo model converts from')
