"""The denoisers released with the plug-and-play paper (Ryu et al. 2019; uclaopt/Provable_Plug_and_Play,
`Pretrained_models/*.pth`) as the zoo's `simplecnn` / `dncnn`.

Each file is the state dict of an nn.Sequential named `dncnn` that computes the noise N(x) (the paper's scripts
denoise with x - N(x), as the zoo's D does), saved in torch's legacy format, DnCNN's under DataParallel's `module.`:
- SimpleCNN: `dncnn.{0,2,4,6}.weight`, four 3x3 convolutions without bias, ReLU between them.
- RealSN-SimpleCNN: the same convolutions with the buffers of the paper's spectral normalisation: `weight_orig` (the
  trained parameter), `weight_u` (the power iteration's vector on a 40x40 patch) and `weight`, the normalised kernel
  weight_orig / sigma of the last training step. In evaluation mode the paper's hook leaves `weight` as it is, so
  `weight` is the kernel its scripts use, and the one read here: the function is the same, as plain convolutions
  (spectral_norm=None) whose Lipschitz bound zoo.inverse.lipschitz measures rather than imposes.
- DnCNN: 17 convolutions with BatchNorm (eps 1e-5) after each inner one: `dncnn.{0,2,5,...,47}.weight`, BatchNorm
  `dncnn.{3,6,...}.{weight,bias,running_mean,running_var}`.
The architecture is read off the keys: the convolutions in order, BatchNorm where a module has running statistics.
"""
import re

import numpy as np

from zoo.errors import UserError

SEQUENTIAL = 'dncnn'  # the name of the paper's nn.Sequential


def read(state_dict: dict, path: str = 'the file') -> tuple[str, dict, dict]:
  """(zoo model name, its create_model overrides, variables {'params'[, 'batch_stats']} as numpy) of a released
  denoiser's state dict (prefix `module.` already stripped, zoo.convert.load_weights does it)."""
  modules = {}
  for key, value in state_dict.items():
    match = re.fullmatch(rf'{SEQUENTIAL}\.(\d+)\.(\w+)', key)
    if match is None:
      if key.endswith('num_batches_tracked'):
        continue
      shown = ', '.join(list(state_dict)[:4])
      raise UserError(f'{path} is no denoiser of the plug-and-play paper (keys {SEQUENTIAL}.N.weight ...): it holds '
                      f'{shown}, ... ({len(state_dict)} entries)')
    modules.setdefault(int(match[1]), {})[match[2]] = np.asarray(value)
  convs = [i for i in sorted(modules) if modules[i].get('weight', np.zeros(())).ndim == 4]
  kernels = [modules[i].get('weight') for i in convs]
  if len(convs) < 2 or any(k.shape[2:] != (3, 3) for k in kernels):
    raise UserError(f'{path}: want at least two 3x3 convolutions in {SEQUENTIAL}, found kernels '
                    f'{[k.shape for k in kernels]}')
  norms = [i for i in sorted(modules) if 'running_mean' in modules[i]]
  params = {f'Conv_{n}': {'kernel': kernel.transpose(2, 3, 1, 0).astype(np.float32)}
            for n, kernel in enumerate(kernels)}
  variables = {'params': params}
  if norms:
    # BatchNorm module i follows convolution n (n >= 1), which the zoo names bn{n}.
    after = {i: max(n for n, c in enumerate(convs) if c < i) for i in norms}
    if sorted(after.values()) != list(range(1, len(convs) - 1)):
      raise UserError(f'{path}: BatchNorm at modules {norms} is not one after each inner convolution')
    for i, n in after.items():
      bn = modules[i]
      params[f'bn{n}'] = {'scale': bn['weight'].astype(np.float32), 'bias': bn['bias'].astype(np.float32)}
      variables.setdefault('batch_stats', {})[f'bn{n}'] = {'mean': bn['running_mean'].astype(np.float32),
                                                            'var': bn['running_var'].astype(np.float32)}
  features = int(kernels[0].shape[0])
  kwargs = {'depth': len(convs), 'features': features, 'batch_norm': bool(norms)}
  return ('dncnn' if norms else 'simplecnn'), kwargs, variables


def load(path: str):
  """(flax module, variables, description) of a released denoiser file; anything else is one UserError line."""
  from zoo import registry
  from zoo.convert.readers import load_weights
  state_dict = load_weights(path)
  name, kwargs, variables = read(state_dict, path)
  return registry.create_model(name, **kwargs), variables, describe(name, kwargs, state_dict)


def describe(name: str, kwargs: dict, state_dict: dict) -> str:
  """What a released file is, in the paper's terms: 'RealSN-SimpleCNN (4 layers)', 'DnCNN (17 layers, BN)'."""
  realsn = any(k.endswith('weight_orig') for k in state_dict)
  kind = ('RealSN-' if realsn else '') + ('DnCNN' if name == 'dncnn' else 'SimpleCNN')
  return f'{kind} ({kwargs["depth"]} layers{", BN" if kwargs["batch_norm"] else ""})'
