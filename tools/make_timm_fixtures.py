"""Writes tests/fixtures/timm/: small timm ResNet-RS models with random weights and timm's logits, for parity tests.

tests/test_convert.py converts these weights with `zoo.convert.from_timm` and compares the zoo's eval-mode logits
with timm's, without torch or timm. The models are `resnetrs50` with fewer blocks and narrower stages (timm's
`layers`, `channels`, `stem_width`; the zoo's `stage_depths`, `width_multiplier`), the same block types. Every
weight is random and non-trivial, the zero-initialised last BatchNorm of each block included (otherwise parity would
not test the residual branch), and input sizes make some feature maps odd where the shortcut average-pools.

Also written: a `.pth` copy of one model (for the torch-file reader), `tensors.{pth,safetensors,npz}` (dtypes,
strided and shared views, a timm training-checkpoint wrapper) and the state-dict shapes of full-size timm models.

Needs torch, timm and safetensors, e.g. in a separate venv (the zoo itself needs none of them):
  python3 -m venv /tmp/timmvenv
  /tmp/timmvenv/bin/pip install torch==2.13.0 timm safetensors --extra-index-url https://download.pytorch.org/whl/cpu
  /tmp/timmvenv/bin/python tools/make_timm_fixtures.py
Re-running rewrites the same fixtures (fixed seeds).

`--volo` writes only the VOLO fixtures instead (volo_*: small timm VOLO models, see VOLO_MODELS), for
tests/test_volo.py; the ResNet-RS files are left as they are.

`--preprocessing` writes only preprocessing.npz / preprocessing.json: timm's evaluation transform of the published
weights of each family (`resolve_data_config` + `create_transform` of PREPROCESSED) applied to three photographs of
scikit-image, for tests/test_pretrained.py. It needs torchvision's real transforms: the torchvision wheel loads
beside this torch build once its compiled-op registration module `torchvision._meta_registrations` is replaced by an
empty module, which this mode does instead of installing the stub.
"""
import argparse
import collections
import json
import os
import sys
import types

import numpy as np

import torchvision_stub  # tools/, the script's own folder, is on the import path

if '--preprocessing' in sys.argv:
  sys.modules['torchvision._meta_registrations'] = types.ModuleType('torchvision._meta_registrations')
else:
  torchvision_stub.install()  # timm imports torchvision, which is not needed here (see torchvision_stub)
import timm  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests', 'fixtures', 'timm')
STAGE_WIDTHS, STEM_WIDTH = (64, 128, 256, 512), 32  # resnetrs50's, before the width multiplier

# name -> (blocks per stage, width multiplier, classes, NCHW input, also save as .pth). Width 1/8 keeps the files
# small (< 1 MB each); below it timm's SE rounds its reduced width up to 8 channels and the zoo's does not.
MODELS = {
    # 36 -> 18 -> 9 (stage 1) -> 5 -> 3 -> 2: every average-pooled shortcut sees an odd map.
    'rs_d1111_w0125': ((1, 1, 1, 1), 0.125, 10, (2, 3, 36, 36), True),
    # Non-square 44x36; blocks without a projection, three of them in stage 1 (the zoo's scan_blocks scans two).
    'rs_d3221_w0125': ((3, 2, 2, 1), 0.125, 7, (2, 3, 44, 36), False),
}
FULL_SIZE = ('resnetrs50', 'resnetrs101')  # shapes only, for the mismatch tests


def build(blocks, width, num_classes):
  """timm's resnetrs50 with `blocks` per stage and widths scaled as the zoo's width_multiplier scales them."""
  return timm.create_model('resnetrs50', pretrained=False, layers=list(blocks), num_classes=num_classes,
                           channels=tuple(int(round(c * width)) for c in STAGE_WIDTHS),
                           stem_width=int(round(STEM_WIDTH * width)))


@torch.no_grad()
def randomize_batchnorm(model, generator):
  """Random BatchNorm affine parameters and statistics, none zero, so that conversion errors cannot hide."""
  for m in model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.weight.uniform_(0.5, 1.5, generator=generator)
      m.bias.normal_(0.0, 0.2, generator=generator)
      m.running_mean.normal_(0.0, 0.2, generator=generator)
      m.running_var.uniform_(0.5, 2.0, generator=generator)
      m.num_batches_tracked.fill_(123)


@torch.no_grad()
def randomize(model, generator):
  """Random BatchNorm affine parameters and statistics (none zero), and a random classifier."""
  randomize_batchnorm(model, generator)
  model.fc.weight.normal_(0.0, 1.0, generator=generator)
  model.fc.bias.normal_(0.0, 0.1, generator=generator)


def model_fixture(name, blocks, width, num_classes, input_shape, pth, seed):
  torch.manual_seed(seed)
  model = build(blocks, width, num_classes)
  randomize(model, torch.Generator().manual_seed(seed))
  model.eval()
  x = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed + 1))
  with torch.no_grad():
    logits = model(x)
    reference = model.double()(x.double())  # how far float32 timm is from exact, for the record
    model.float()
  state_dict = {k: v.contiguous() for k, v in model.state_dict().items()}
  save_file(state_dict, os.path.join(OUT, f'{name}.safetensors'))
  if pth:
    torch.save(model.state_dict(), os.path.join(OUT, f'{name}.pth'))
  np.savez_compressed(os.path.join(OUT, f'{name}.npz'), input_nchw=x.numpy(), logits=logits.numpy())
  zero_gammas = sum(int((m.weight == 0).any()) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
  assert zero_gammas == 0, 'a BatchNorm kept a zero weight: parity would not see its branch'
  print(f'{name}: {sum(p.numel() for p in model.parameters())} params, |logits| <= {logits.abs().max():.3f}, '
        f'float32 vs float64 timm: {(logits.double() - reference).abs().max():.2e}')
  return {
      'model': 'resnetrs50',
      'model_kwargs': {'stage_depths': list(blocks), 'width_multiplier': width, 'num_classes': num_classes},
      'timm_kwargs': {'layers': list(blocks), 'channels': [int(round(c * width)) for c in STAGE_WIDTHS],
                      'stem_width': int(round(STEM_WIDTH * width)), 'num_classes': num_classes},
      'num_params': sum(p.numel() for p in model.parameters()),
      'input_shape_nchw': list(input_shape),
      'pth': pth,
  }


def tensor_fixture():
  """Tensors that exercise the .pth reader: every common dtype, non-contiguous and shared storages, a wrapper."""
  g = torch.Generator().manual_seed(7)
  base = torch.randn(4, 6, generator=g)
  tensors = collections.OrderedDict(
      f32=torch.randn(3, 4, generator=g),
      f32_transposed=torch.randn(5, 3, generator=g).t(),
      f32_shared=base,
      f32_shared_strided=base[1:3, ::2],
      f64=torch.randn(3, generator=g, dtype=torch.float64),
      f16=torch.randn(2, 2, generator=g).half(),
      bf16=torch.randn(5, generator=g).bfloat16(),
      i64=torch.arange(6).view(2, 3),
      i32=torch.arange(-3, 3, dtype=torch.int32),
      u8=torch.arange(250, 256, dtype=torch.uint8),
      bool=torch.tensor([True, False, True]),
      scalar=torch.tensor(3.5),
      empty=torch.zeros(0, 3),
  )
  # timm's training checkpoints: EMA and raw weights (the raw ones under DistributedDataParallel's prefix), args.
  checkpoint = {'epoch': 7, 'arch': 'resnetrs50', 'args': argparse.Namespace(model='resnetrs50', lr=0.1),
                'state_dict': collections.OrderedDict({'module.f32': -tensors['f32']}),
                'state_dict_ema': tensors, 'metric': 0.5}
  torch.save(checkpoint, os.path.join(OUT, 'tensors.pth'))
  save_file({k: v.contiguous().clone() for k, v in tensors.items()}, os.path.join(OUT, 'tensors.safetensors'))
  np.savez(os.path.join(OUT, 'tensors.npz'),
           **{k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in tensors.items()})


def shapes_fixture(names=FULL_SIZE, filename='full_size_shapes.json'):
  """The state-dict shapes of timm's full-size `names` (built on the meta device: no weights), as JSON."""
  shapes = {}
  for name in names:
    with torch.device('meta'):
      model = timm.create_model(name, pretrained=False)
    shapes[name] = {k: list(v.shape) for k, v in model.state_dict().items()}
  with open(os.path.join(OUT, filename), 'w') as f:
    json.dump(shapes, f, separators=(',', ':'))


def main():
  os.makedirs(OUT, exist_ok=True)
  manifest = {name: model_fixture(name, *spec, seed=i) for i, (name, spec) in enumerate(MODELS.items())}
  with open(os.path.join(OUT, 'models.json'), 'w') as f:
    json.dump(manifest, f, indent=1)
  tensor_fixture()
  shapes_fixture()
  print(f'timm {timm.__version__}, torch {torch.__version__}; wrote {OUT}: ' + ', '.join(
      f'{n} {os.path.getsize(os.path.join(OUT, n)) // 1024} KiB' for n in sorted(os.listdir(OUT))))


# name -> (timm VOLO kwargs, NCHW input, MixToken box (rows lo, hi, columns lo, hi) on the 1/16 grid). Same block
# types as volo_d1, fewer and narrower: odd and non-square grids (5x4, 3x3), different heads per stage, stages of
# two outlookers and of two transformer blocks.
VOLO_MODELS = {
    'volo_l2111_e32_48': (dict(layers=(2, 1, 1, 1), embed_dims=(32, 48, 48, 48), num_heads=(2, 4, 3, 6),
                               mlp_ratio=3.0, stem_hidden_dim=16, img_size=(80, 64), num_classes=10),
                          (2, 3, 80, 64), (1, 4, 0, 2)),
    'volo_l1112_e16_32': (dict(layers=(1, 1, 1, 2), embed_dims=(16, 32, 32, 32), num_heads=(1, 2, 4, 2),
                               mlp_ratio=4.0, stem_hidden_dim=8, img_size=48, num_classes=5),
                          (3, 3, 48, 48), (0, 2, 1, 3)),
}
VOLO_FULL_SIZE = ('volo_d1_224', 'volo_d1_384')  # shapes only, for the layout tests
ZOO_KWARGS = ('layers', 'embed_dims', 'num_heads', 'mlp_ratio', 'stem_hidden_dim', 'num_classes')


@torch.no_grad()
def randomize_volo(model, generator):
  """Every weight random and O(1)-preserving (timm's N(0, 0.02) Linears would leave the logits near the biases)."""
  for name, p in model.named_parameters():
    if name.endswith('attn.attn.bias'):  # outlook attention's mixing weights: far from uniform
      p.normal_(0.0, 1.0, generator=generator)
    elif p.ndim == 2 or name.startswith('patch_embed.'):  # Linear and conv weights: fan-in scaled
      fan_in = p[0].numel() if p.ndim > 1 else 1
      # Sharper attention than fan-in scaling gives, so that parity sees which token attends where.
      gain = 4.0 if name.endswith('attn.attn.weight') else 2.0 if name.endswith(('qkv.weight', 'q.weight')) else 1.0
      p.normal_(0.0, gain * fan_in ** -0.5 if p.ndim > 1 else 0.1, generator=generator)
    elif name.endswith('norm1.weight') or name.endswith('norm2.weight') or name == 'norm.weight':
      p.uniform_(0.5, 1.5, generator=generator)
    else:  # biases, LayerNorm shifts, pos_embed, cls_token
      p.normal_(0.0, 0.3 if name in ('pos_embed', 'cls_token') else 0.1, generator=generator)
  randomize_batchnorm(model, generator)


def volo_fixture(name, kwargs, input_shape, box, seed):
  """Weights, eval logits, and training outputs (batch-statistics BN) with and without a given MixToken box."""
  from timm.models import volo
  torch.manual_seed(seed)
  model = volo.VOLO(**kwargs, use_mix_token=True)
  randomize_volo(model, torch.Generator().manual_seed(seed))
  state_dict = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
  x = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed + 1))
  model.eval()
  with torch.no_grad():
    logits = model(x)
    reference = model.double()(x.double())
    model.float()
  arrays = dict(input_nchw=x.numpy(), logits=logits.numpy())
  # Training: timm's forward_train returns the class token's features, not its logits; the head is applied here.
  real_rand_bbox = volo.rand_bbox
  for tag, mix in (('train', False), ('train_mix', True)):
    model.load_state_dict(state_dict)
    model.train()
    model.mix_token = mix
    volo.rand_bbox = lambda *args, **kw: (box[0], box[2], box[1], box[3])  # timm's order: x1, y1, x2, y2
    try:
      with torch.no_grad():
        cls, aux, bbox = model.forward_train(x)
        arrays[f'{tag}_logits'] = model.head(cls).numpy()
    finally:
      volo.rand_bbox = real_rand_bbox
    grid = (input_shape[2] // 16, input_shape[3] // 16)
    arrays[f'{tag}_aux_logits'] = aux.reshape(input_shape[0], *grid, -1).numpy()
  arrays['train_box'] = np.asarray(box, np.int32)
  model.load_state_dict(state_dict)
  save_file(state_dict, os.path.join(OUT, f'{name}.safetensors'))
  np.savez_compressed(os.path.join(OUT, f'{name}.npz'), **arrays)
  num_params = sum(p.numel() for p in model.parameters())
  print(f'{name}: {num_params} params, |logits| <= {logits.abs().max():.3f}, '
        f'float32 vs float64 timm: {(logits.double() - reference).abs().max():.2e}')
  size = kwargs['img_size']
  return {
      'model': 'volo_d1',
      'model_kwargs': {**{k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items() if k in ZOO_KWARGS},
                       'image_size': list(size) if isinstance(size, tuple) else size},
      'timm_kwargs': {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
      'num_params': num_params,
      'input_shape_nchw': list(input_shape),
  }


def volo_main():
  os.makedirs(OUT, exist_ok=True)
  manifest = {name: volo_fixture(name, *spec, seed=100 + i) for i, (name, spec) in enumerate(VOLO_MODELS.items())}
  with open(os.path.join(OUT, 'volo_models.json'), 'w') as f:
    json.dump(manifest, f, indent=1)
  shapes_fixture(VOLO_FULL_SIZE, 'volo_full_size_shapes.json')
  print(f'timm {timm.__version__}, torch {torch.__version__}; wrote ' + ', '.join(
      f'{n} {os.path.getsize(os.path.join(OUT, n)) // 1024} KiB' for n in sorted(os.listdir(OUT))
      if n.startswith('volo_')))


# timm models whose published weights' evaluation transform is recorded -> the photographs it is applied to.
# 160 px at crop 0.91, 224 px at crop 0.96, and 448 px at crop 1.15 (a side shorter than the crop: zero padding).
PREPROCESSED = {'resnetrs50': ('chelsea', 'coffee', 'astronaut'), 'volo_d1_224': ('chelsea', 'coffee', 'astronaut'),
                'volo_d4_448': ('chelsea',)}


def preprocessing_main():
  """timm's eval transform output, de-normalised back to the uint8 pixels it was computed from (Pillow resizes
  uint8 images; ToTensor and Normalize are affine, so this is exact up to float rounding, checked below)."""
  from PIL import Image
  from skimage import data
  arrays, configs = {}, {}
  for name, photographs in PREPROCESSED.items():
    config = timm.data.resolve_data_config({}, model=timm.create_model(name, pretrained=False))
    transform = timm.data.create_transform(**config)
    configs[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}
    mean, std = np.array(config['mean'])[:, None, None], np.array(config['std'])[:, None, None]
    for photo in photographs:
      out = transform(Image.fromarray(getattr(data, photo)()).convert('RGB')).numpy().astype(np.float64)
      pixels = (out * std + mean) * 255
      assert np.abs(pixels - np.round(pixels)).max() < 1e-3, (name, photo)
      arrays[f'{name}/{photo}'] = np.round(pixels).astype(np.uint8).transpose(1, 2, 0)
  np.savez_compressed(os.path.join(OUT, 'preprocessing.npz'), **arrays)
  with open(os.path.join(OUT, 'preprocessing.json'), 'w') as f:
    json.dump({'timm': timm.__version__, 'configs': configs}, f, indent=1)
  print(f'timm {timm.__version__}; wrote preprocessing.npz '
        f'{os.path.getsize(os.path.join(OUT, "preprocessing.npz")) // 1024} KiB: {json.dumps(configs)}')


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--volo', action='store_true', help='write only the VOLO fixtures')
  parser.add_argument('--preprocessing', action='store_true', help='write only the preprocessing fixtures')
  args = parser.parse_args()
  if args.preprocessing:
    preprocessing_main()
  elif args.volo:
    volo_main()
  else:
    main()
