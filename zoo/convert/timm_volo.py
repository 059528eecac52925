"""Where timm's `volo_d*` (timm.models.volo.VOLO) keeps each VOLO variable.

timm's `network` list interleaves stages and the one downsample: network.0 = the outlookers, network.1 = the
downsample, network.s = transformer stage s (1-based) after it; `post_network` holds the class-attention blocks.
Inside the blocks the zoo uses timm's names (norm1, attn.{v,attn,qkv,q,kv,proj}, norm2, mlp.fc{1,2}).
"""
import re

from zoo.convert.timm import TimmFamily, register_timm
from zoo.models.volo import PATCH_SIZE, POOLING_SCALE, VARIANTS

# The stem's Sequential: conv, bn, relu, conv, bn, relu, conv, bn, relu.
_STEM = {'conv1': 'conv.0', 'bn1': 'conv.1', 'conv2': 'conv.3', 'bn2': 'conv.4', 'conv3': 'conv.6', 'bn3': 'conv.7',
         'proj': 'proj'}
_LEAF = {('params', 'kernel'): 'weight', ('params', 'bias'): 'bias', ('params', 'scale'): 'weight',
         ('batch_stats', 'mean'): 'running_mean', ('batch_stats', 'var'): 'running_var'}


def timm_key(path: tuple[str, ...]) -> str:
  """('params', 'stage3_block1', 'attn', 'qkv', 'kernel') -> 'network.3.1.attn.qkv.weight'."""
  collection, *modules, leaf = path
  if not modules:  # pos_embed, cls_token: stored as they are
    return leaf
  top, rest = modules[0], modules[1:]
  if top == 'patch_embed':
    module = f'patch_embed.{_STEM[rest[0]]}'
  elif top == 'downsample':
    module = 'network.1.proj'
  elif m := re.fullmatch(r'stage(\d+)_block(\d+)', top):
    stage, block = int(m.group(1)), m.group(2)
    module = '.'.join([f'network.{0 if stage == 1 else stage}.{block}', *rest])
  elif m := re.fullmatch(r'cls_block(\d+)', top):
    module = '.'.join([f'post_network.{m.group(1)}', *rest])
  else:  # norm, head, aux_head
    module = '.'.join([top, *rest])
  return f'{module}.{_LEAF[collection, leaf]}'


def guess(state_dict: dict) -> str:
  """The create_model call whose variables a timm VOLO file holds, e.g. 'volo_d1(image_size=384, num_classes=1000)'."""
  def count(prefix):
    return 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(rf'{re.escape(prefix)}\.(\d+)\.', k)))

  stages = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r'network\.(\d+)\.\d+\.', k))})
  layers = tuple(count(f'network.{s}') for s in stages)
  dims = tuple(state_dict[f'network.{s}.0.norm1.weight'].shape[0] for s in stages)
  fc1 = state_dict['network.0.0.mlp.fc1.weight'].shape[0]
  config = dict(layers=layers, embed_dims=dims, mlp_ratio=float(fc1 / dims[0]),
                stem_hidden_dim=state_dict['patch_embed.conv.0.weight'].shape[0])
  name = next((n for n, v in VARIANTS.items() if all(tuple(v[k]) == config[k] if k in ('layers', 'embed_dims')
                                                     else v[k] == config[k] for k in config)), None)
  args = [] if name else [f'{k}={v}' for k, v in config.items()]
  _, h, w, _ = state_dict['pos_embed'].shape
  size = (h * PATCH_SIZE * POOLING_SCALE, w * PATCH_SIZE * POOLING_SCALE)
  if size != (224, 224):
    args.append(f'image_size={size[0] if size[0] == size[1] else size}')
  args.append(f'num_classes={state_dict["head.weight"].shape[0]}')
  return f'{name or "volo_d1"}({", ".join(args)})'


register_timm('volo', TimmFamily(timm_key, guess, input_shape=lambda model: (1, *model.image_hw, 3)))
