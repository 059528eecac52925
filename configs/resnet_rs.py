"""ResNet-RS on ImageNet, by the paper's scaling rules: `--config=configs/resnet_rs.py:DEPTH-RES`.

The eleven published configurations (Bello et al. 2021, TF1 release) follow from two rules, so any other
DEPTH-RES pair (e.g. 101-224, 200-320) is regularised the paper's way:
  * regularisation grows with model size: stochastic depth 0.1 from depth 200 on (0 below), dropout 0.25,
    raised to 0.4 at resolution 320 and above;
  * RandAugment (2 layers) magnitude grows with resolution: 10 up to 160, 15 above.
Recipe: batch 4096, 350 epochs, SGD Nesterov momentum 0.9, LR 0.1 * batch / 256, 5 warm-up epochs then cosine,
L2 4e-5 on non-BN weights, label smoothing 0.1, EMA 0.9999 of weights and BN statistics, bfloat16 compute.
"""
from configs import common

DEPTHS = (50, 101, 152, 200, 270, 350, 420)
# The paper's table: (depth, resolution) -> ImageNet top-1 of the TF1 release.
PUBLISHED = {(50, 160): 78.8, (101, 160): 80.3, (101, 192): 81.2, (152, 192): 82.0, (152, 224): 82.2,
             (152, 256): 83.0, (200, 256): 83.4, (270, 256): 83.8, (350, 256): 84.0, (350, 320): 84.2,
             (420, 320): 84.4}


def regularization(depth: int, resolution: int) -> dict:
  """The scaling rules: regularisation for a (depth, resolution) pair."""
  return dict(dropout_rate=0.4 if resolution >= 320 else 0.25,
              stochastic_depth_rate=0.1 if depth >= 200 else 0.0,
              randaugment_magnitude=10 if resolution <= 160 else 15)


def parse(arg: str) -> tuple[int, int]:
  try:
    depth, resolution = (int(v) for v in arg.split('-'))
  except ValueError:
    raise ValueError(f'ResNet-RS config takes DEPTH-RES (e.g. 50-160), got {arg!r}') from None
  if depth not in DEPTHS:
    raise ValueError(f'ResNet-RS depth {depth} is not one of {DEPTHS}')
  if resolution < 32 or resolution % 32:
    raise ValueError(f'resolution {resolution} must be a positive multiple of 32 (the network stride)')
  return depth, resolution


def get_config(arg: str = '50-160'):
  depth, resolution = parse(arg)
  reg = regularization(depth, resolution)
  c = common.classification()
  c.model = f'resnetrs{depth}'
  c.model_kwargs.dropout_rate = reg['dropout_rate']
  c.model_kwargs.stochastic_depth_rate = reg['stochastic_depth_rate']
  c.model_kwargs.dtype = 'bfloat16'
  # Deep members scan their identical blocks: RS-420's training step compiles in ~20 s instead of ~3 min.
  c.model_kwargs.scan_blocks = depth >= 200
  c.input.image_size = resolution
  c.input.randaugment_layers = 2
  c.input.randaugment_magnitude = reg['randaugment_magnitude']
  c.batch_size = 4096
  c.num_epochs = 350.0
  c.learning_rate = 0.1
  c.warmup_epochs = 5.0
  c.weight_decay = 4e-5
  c.label_smoothing = 0.1
  c.ema_decay = 0.9999
  return c
