"""Writes tests/fixtures/pnp/: small denoisers in the layout of the plug-and-play paper's released files, and their
outputs computed by torch, for tests/test_pnp_release.py (zoo.convert.pnp_denoisers).

The paper's denoisers (uclaopt/Provable_Plug_and_Play, model/SimpleCNN_models.py and model/models.py) are an
nn.Sequential `dncnn` of 3x3 convolutions without bias, ReLU between them and, in DnCNN, BatchNorm after each inner
convolution; the network outputs the noise, and the scripts denoise with x - net(x). This script builds that
architecture in torch (with 16 features instead of 64, to keep the files small) and writes, in torch's legacy format
as the paper's files are:
- simplecnn.pth: 4 convolutions;
- realsn_simplecnn.pth: the same with the spectral-norm buffers of the paper's RealSN (weight_orig, weight_u and the
  normalised weight = weight_orig / sigma, sigma by power iteration on the convolution as an operator), which its
  evaluation uses as the kernel;
- dncnn.pth: 5 convolutions with BatchNorm (random statistics), under DataParallel's `module.` prefix;
and outputs.npz: a noisy 40x40 input ('input', NCHW) and each denoiser's x - net(x) in evaluation mode.

With `--pnp_data DIR` (the paper's data, with its released denoisers in DIR/pretrained/) it also writes
released.npz: the noise each released denoiser estimates, net(x), on x = the top-left 64x64 of Set12/01.png (in
[0, 1]) plus N(0, (sigma / 255)^2) noise from numpy's default_rng(sigma), computed by torch, for the test that reads
the released files themselves (it rebuilds x from the data; the fixture holds no image of the data set).

  /tmp/timmvenv/bin/python tools/make_pnp_fixtures.py [--pnp_data DIR]
"""
import argparse
import glob
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests', 'fixtures', 'pnp')


def sequential(depth: int, features: int, batch_norm: bool) -> torch.nn.Sequential:
  layers = [torch.nn.Conv2d(1, features, 3, padding=1, bias=False), torch.nn.ReLU()]
  for _ in range(depth - 2):
    layers.append(torch.nn.Conv2d(features, features, 3, padding=1, bias=False))
    if batch_norm:
      layers.append(torch.nn.BatchNorm2d(features))
    layers.append(torch.nn.ReLU())
  layers.append(torch.nn.Conv2d(features, 1, 3, padding=1, bias=False))
  return torch.nn.Sequential(*layers)


class Denoiser(torch.nn.Module):
  def __init__(self, depth, features, batch_norm):
    super().__init__()
    self.dncnn = sequential(depth, features, batch_norm)

  def forward(self, x):
    return self.dncnn(x)


def operator_norm(kernel: torch.Tensor, size: int, iterations: int = 200):
  """(sigma, u) of the convolution as an operator on size x size images, by power iteration."""
  v = torch.randn(1, kernel.shape[1], size, size, generator=torch.Generator().manual_seed(0))
  for _ in range(iterations):
    u = F.conv2d(v, kernel, padding=1)
    u = u / u.norm()
    v = F.conv_transpose2d(u, kernel, padding=1)
    v = v / v.norm()
  u = F.conv2d(v, kernel, padding=1)
  return float(u.norm()), u / u.norm()


def randomise(model: Denoiser, seed: int) -> None:
  generator = torch.Generator().manual_seed(seed)
  for module in model.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      for tensor, low in ((module.weight, 0.5), (module.bias, -0.2), (module.running_mean, -0.2),
                          (module.running_var, 0.5)):
        tensor.data = low + torch.rand(tensor.shape, generator=generator) * (2 * abs(low) if low < 0 else 1.0)


def residual_of(model: Denoiser, x: torch.Tensor) -> np.ndarray:
  model.eval()
  with torch.no_grad():
    return (x - model(x)).numpy()


def main(args):
  os.makedirs(OUT, exist_ok=True)
  torch.manual_seed(0)
  x = (torch.rand(1, 1, 40, 40) + 0.06 * torch.randn(1, 1, 40, 40)).float()
  outputs = {'input': x.numpy()}

  simple = Denoiser(4, 16, False)
  outputs['simplecnn'] = residual_of(simple, x)
  torch.save(simple.state_dict(), os.path.join(OUT, 'simplecnn.pth'), _use_new_zipfile_serialization=False)

  realsn = Denoiser(4, 16, False)
  state = {}
  for name, module in realsn.dncnn.named_children():
    if isinstance(module, torch.nn.Conv2d):
      sigma, u = operator_norm(module.weight.data, 8)
      module.weight.data = module.weight.data / sigma  # what the paper's evaluation convolves with
      state.update({f'dncnn.{name}.weight_orig': module.weight.data * sigma, f'dncnn.{name}.weight': module.weight.data,
                    f'dncnn.{name}.weight_u': u})
  outputs['realsn_simplecnn'] = residual_of(realsn, x)
  torch.save(state, os.path.join(OUT, 'realsn_simplecnn.pth'), _use_new_zipfile_serialization=False)

  dncnn = Denoiser(5, 16, True)
  randomise(dncnn, 1)
  outputs['dncnn'] = residual_of(dncnn, x)
  torch.save({f'module.{k}': v for k, v in dncnn.state_dict().items()}, os.path.join(OUT, 'dncnn.pth'),
             _use_new_zipfile_serialization=False)
  np.savez(os.path.join(OUT, 'outputs.npz'), **outputs)

  if args.pnp_data:
    released(args.pnp_data)
  print('wrote', ', '.join(f'{n} {os.path.getsize(os.path.join(OUT, n)) // 1024} KiB' for n in sorted(os.listdir(OUT))))


def released(data_dir: str):
  """net(x) of each released denoiser, loaded into the paper's architecture as its scripts load it."""
  image = np.asarray(Image.open(os.path.join(data_dir, 'Set12', '01.png')).convert('L'), np.float32)[:64, :64] / 255
  outputs = {}
  for path in sorted(glob.glob(os.path.join(data_dir, 'pretrained', '*.pth'))):
    name = os.path.basename(path)[:-len('.pth')]
    sigma = int(name.rsplit('noise', 1)[1])
    state = {k.removeprefix('module.'): v for k, v in torch.load(path, map_location='cpu', weights_only=True).items()}
    depth, batch_norm = (17, True) if name.startswith('DnCNN') else (4, False)
    model = Denoiser(depth, 64, batch_norm)
    # RealSN files: the evaluation convolves with the stored normalised `weight` (module docstring of
    # zoo/convert/pnp_denoisers.py); the other buffers only serve training.
    model.load_state_dict({k: v for k, v in state.items() if not k.endswith(('weight_orig', 'weight_u'))})
    noisy = image + np.random.default_rng(sigma).normal(0, sigma / 255, image.shape).astype(np.float32)
    outputs[name] = noisy - residual_of(model, torch.from_numpy(noisy)[None, None])[0, 0]
  np.savez_compressed(os.path.join(OUT, 'released.npz'), **outputs)


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--pnp_data', help='the paper\'s data, with its released denoisers in pretrained/')
  main(parser.parse_args())
