"""Where timm's `resnetrs*` (timm.models.resnet.ResNet, deep stem, avg-down, SE) keeps each ResNet-RS variable."""
import re

from zoo.convert.timm import TimmFamily, register_timm
from zoo.models.resnet_rs import DEPTHS, STAGE_WIDTHS

# Our stem ConvBN -> timm's (conv, bn): the deep stem is one nn.Sequential `conv1` (conv, bn, act, ...) whose last
# conv is normalised by `bn1`; the strided conv that replaces the max-pool keeps the name `maxpool`.
_STEM = {'conv1': ('conv1.0', 'conv1.1'), 'conv2': ('conv1.3', 'conv1.4'), 'conv3': ('conv1.6', 'bn1'),
         'pool': ('maxpool.0', 'maxpool.1')}
# Block ConvBNs likewise; downsample_avg is (AvgPool2d or Identity, conv, bn): index 0 exists, without weights.
_BLOCK = {'conv1': ('conv1', 'bn1'), 'conv2': ('conv2', 'bn2'), 'conv3': ('conv3', 'bn3'),
          'shortcut': ('downsample.1', 'downsample.2')}
_SE = {'reduce': 'se.fc1', 'expand': 'se.fc2'}
_LEAF = {('params', 'kernel'): 'weight', ('params', 'bias'): 'bias', ('params', 'scale'): 'weight',
         ('batch_stats', 'mean'): 'running_mean', ('batch_stats', 'var'): 'running_var'}


def timm_key(path: tuple[str, ...]) -> str:
  """('params', 'stage2_block0', 'conv1', 'bn', 'scale') -> 'layer2.0.bn1.weight'."""
  collection, *modules, leaf = path
  if modules == ['head']:
    module = 'fc'
  elif modules[0] == 'stem':
    module = _STEM[modules[1]][modules[2] == 'bn']
  else:
    stage, block = re.fullmatch(r'stage(\d)_block(\d+)', modules[0]).groups()
    name = _SE[modules[2]] if modules[1] == 'se' else _BLOCK[modules[1]][modules[2] == 'bn']
    module = f'layer{stage}.{block}.{name}'
  return f'{module}.{_LEAF[collection, leaf]}'


def guess(state_dict: dict) -> str:
  """The create_model call whose variables a timm ResNet-RS file holds, e.g. 'resnetrs101(num_classes=1000)'."""
  depths = tuple(1 + max(int(m.group(1)) for k in state_dict if (m := re.match(rf'layer{s}\.(\d+)\.', k)))
                 for s in range(1, 5))
  name = next((f'resnetrs{d}' for d, blocks in DEPTHS.items() if blocks == depths), None)
  args = [] if name else [f'stage_depths={depths}']
  width = state_dict['layer1.0.conv1.weight'].shape[0] / STAGE_WIDTHS[0]
  if width != 1:
    args.append(f'width_multiplier={width:g}')
  args.append(f'num_classes={state_dict["fc.weight"].shape[0]}')
  return f'{name or "resnetrs50"}({", ".join(args)})'


register_timm('resnetrs', TimmFamily(timm_key, guess))
