"""VOLO on ImageNet (Yuan et al. 2021): `--config=configs/volo.py:VARIANT-RES`, VARIANT d1..d5, e.g. d1-224, d5-512.

Like the VOLO repository (sail-sg/volo, README and main.py), a member is trained at 224 and then fine-tuned at the
higher resolutions. RES <= 224 trains from scratch with the paper's recipe: AdamW, batch 1024, peak LR 1.6e-3 (D1) /
1e-3 (D2, D3) at batch 1024, weight decay 0.05 (kernels only), 20 warm-up epochs, cosine to 1e-5 over 300 epochs
then 10 cooldown epochs at 1e-5 (the repository's --epochs 300 --cooldown-epochs 10: "310 epochs"), drop path
0.1 / 0.2 / 0.5, label smoothing 0.1, RandAugment 2 layers m9 mstd0.5, random erasing 0.25, MixToken and the
token-labelling loss. RES > 224 is the repository's fine-tuning recipe and needs the 224 run's weights:
`--config.init_from=WORKDIR_OF_THE_224_RUN` (the position embedding is resized bicubically, zoo/finetune.py).

Not modelled: the token-labelling data (dense annotator scores; without them every token learns the image label, see
README), timm's random bilinear/bicubic train interpolation and bicubic eval resize (ours: bilinear), timm's
'rand-m9-mstd0.5-inc1' op list (see zoo/data/randaugment.py for ours), the warm-up's start at 1e-6 (ours: 0), and timm's
per-epoch schedule whose cosine spans the warm-up epochs too (ours: per step, cosine after the warm-up).
"""
from configs import common

VARIANTS = ('d1', 'd2', 'd3', 'd4', 'd5')
STRIDE = 16  # 8x8 patch stem, then a 2x downsample: the token grid is RES / 16
PRETRAIN_RES = 224
# Released weights: (variant, resolution) -> ImageNet top-1 (VOLO README).
PUBLISHED = {('d1', 224): 84.2, ('d1', 384): 85.2, ('d2', 224): 85.2, ('d2', 384): 86.0, ('d3', 224): 85.4,
             ('d3', 448): 86.3, ('d4', 224): 85.7, ('d4', 448): 86.8, ('d5', 224): 86.1, ('d5', 448): 87.0,
             ('d5', 512): 87.1}
# Peak learning rate at batch 1024 and drop-path rate of the 224 training. D1-D3: the README's training commands.
# D4, D5: no published command; 1e-3 as D2/D3, drop path 0.5 as D3 (same depth) and 0.75 for the deeper D5 (our
# choice, unverified).
PRETRAIN = {'d1': (1.6e-3, 0.1), 'd2': (1e-3, 0.2), 'd3': (1e-3, 0.5), 'd4': (1e-3, 0.5), 'd5': (1e-3, 0.75)}
# Fine-tuning global batch: the README's per-GPU -b times 8 GPUs (D1 64, D2 48, D3 30); D4, D5 unpublished: D3's.
FINETUNE_BATCH = {'d1': 512, 'd2': 384, 'd3': 240, 'd4': 240, 'd5': 240}


def parse(arg: str) -> tuple[str, int]:
  published = ', '.join(f'{v}-{r}' for v, r in sorted(PUBLISHED))
  try:
    variant, res = arg.split('-')
    res = int(res)
  except ValueError:
    raise ValueError(f'VOLO config takes VARIANT-RES (VARIANT in {", ".join(VARIANTS)}), got {arg!r}; the released '
                     f'ones: {published}') from None
  if variant not in VARIANTS:
    raise ValueError(f'VOLO variant {variant!r} is not one of {", ".join(VARIANTS)}; the released configs: '
                     f'{published}')
  if res < STRIDE or res % STRIDE:
    raise ValueError(f'VOLO resolution {res} must be a positive multiple of {STRIDE} (8x8 patches, then a 2x '
                     f'downsample); the released configs: {published}')
  return variant, res


def get_config(arg: str = 'd1-224'):
  variant, res = parse(arg)
  lr, drop_path = PRETRAIN[variant]
  c = common.classification()
  c.model = f'volo_{variant}'
  c.model_kwargs.drop_path_rate = drop_path
  c.model_kwargs.mix_token = True
  c.model_kwargs.dtype = 'bfloat16'  # the repository trains with apex AMP
  c.input.image_size = res
  c.model_kwargs.image_size = c.input.get_ref('image_size')  # the position embedding follows the input size
  # timm's eval crop: 0.96 at 224, 1.0 above (its 1.15 for D4/D5 at 448/512 needs crop_pct > 1, which we refuse).
  c.input.crop_pct = 0.96 if res <= PRETRAIN_RES else 1.0
  c.input.randaugment_layers = 2
  c.input.randaugment_magnitude = 9
  c.input.randaugment_magnitude_std = 0.5
  c.input.random_erasing = 0.25
  c.optimizer = 'adamw'
  c.label_smoothing = 0.1
  c.ema_decay = 0.0  # the recipe keeps no EMA: the trained weights are evaluated
  if res <= PRETRAIN_RES:
    c.batch_size = 1024
    c.lr_base_batch = 1024  # the repository's --lr is the peak at its batch (no scaling)
    c.learning_rate = lr
    c.end_learning_rate = 1e-5
    c.weight_decay = 0.05
    c.warmup_epochs = 20.0
    c.num_epochs = 310.0
    c.cooldown_epochs = 10.0
  else:  # README fine-tuning: --lr 8e-6 --min-lr 4e-6 --weight-decay 1e-8 --warmup-epochs 5 --epochs 30 (+10)
    c.batch_size = FINETUNE_BATCH[variant]
    c.lr_base_batch = c.batch_size
    c.learning_rate = 8e-6
    c.end_learning_rate = 4e-6
    c.weight_decay = 1e-8
    c.warmup_epochs = 5.0
    c.num_epochs = 40.0
    c.cooldown_epochs = 10.0
  return c
