"""Reads weight files into `{name: numpy array}` without torch: `.safetensors`, and torch's files (`.pth`: the zip
format, and the legacy format of torch before 1.6).

A `.pth` is a pickle, and unpickling runs whatever code the file names. We unpickle with an allow-list that
resolves only the few names that tensors and their containers need, to stand-ins of our own (numpy arrays for
storages, a strided view for `_rebuild_tensor_v2`); any other name is refused before anything is called.
"""
import argparse
import collections
import os
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np

from zoo.errors import UserError

TORCH_SUFFIXES = ('.pth', '.pt', '.bin', '.ckpt', '.pth.tar')
# Keys under which training checkpoints keep the model's weights, in the order timm's `load_state_dict` picks them
# (EMA first: it is the better model and what timm publishes).
STATE_DICT_KEYS = ('state_dict_ema', 'model_ema', 'state_dict', 'model')
# Prefixes that wrappers add to every key (DistributedDataParallel, torch.compile); timm strips them too.
WRAPPER_PREFIXES = ('module.', '_orig_mod.')

_STORAGE_DTYPES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}
_SAFETENSORS_DTYPES = {
    'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'BF16': ml_dtypes.bfloat16, 'I64': np.int64,
    'I32': np.int32, 'I16': np.int16, 'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_,
}


def load_weights(path, key: str | None = None) -> dict[str, np.ndarray]:
  """The state dict in `path` (.safetensors or a torch file), as numpy arrays.

  Torch training checkpoints wrap the weights in a dict: `key` picks the entry, by default the first of
  STATE_DICT_KEYS present (EMA weights first, as timm does).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise UserError(f'weights file {path} not found')
  if path.endswith('.safetensors'):
    if key is not None:
      raise UserError(f'{path} is a safetensors file: it holds one state dict, no {key!r} to choose')
    return read_safetensors(path)
  if path.endswith(TORCH_SUFFIXES):
    return _strip_wrappers(select_state_dict(read_torch(path), key, path))
  raise UserError(f'unknown weights format {os.path.basename(path)!r}: expected .safetensors or a torch file '
                  f'({", ".join(TORCH_SUFFIXES)})')


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """All tensors of a safetensors file. Not `safetensors.numpy.load_file`: it cannot read bfloat16."""
  import safetensors
  with open(path, 'rb') as f:
    data = f.read()
  try:
    entries = safetensors.deserialize(data)
  except Exception as e:  # the Rust parser raises its own error type
    raise UserError(f'cannot read {path}: not a valid safetensors file ({e})') from None
  out = {}
  for name, entry in entries:
    if entry['dtype'] not in _SAFETENSORS_DTYPES:
      raise UserError(f'{path}: tensor {name!r} has dtype {entry["dtype"]}, which the zoo does not read')
    dtype = np.dtype(_SAFETENSORS_DTYPES[entry['dtype']]).newbyteorder('<')  # safetensors is little-endian
    out[name] = np.frombuffer(entry['data'], dtype).reshape(entry['shape']).astype(dtype.newbyteorder('='))
  return out


def read_torch(path: str):
  """The object that `torch.save` wrote to `path`, with tensors as numpy arrays; weights only. Reads the zip format
  (torch.save since torch 1.6) and the legacy one before it (a sequence of pickles, then the raw storages)."""
  if not zipfile.is_zipfile(path):
    with open(path, 'rb') as f:
      start = f.read(4)
    if start == b'PK\x03\x04':  # a zip archive's start without its end
      raise UserError(f'{path} is truncated or corrupt (a zip archive without its directory): fetch it again')
    if start[:1] != b'\x80':  # every pickle of protocol 2 or above starts so
      raise UserError(f'{path} is not a torch file: neither a zip archive nor a pickle')
    return _unpickled(path, _read_legacy)
  return _unpickled(path, _read_zip)


def _unpickled(path: str, reader):
  try:
    return reader(path)
  except UserError:
    raise
  except _Refused as e:
    raise UserError(f'refusing to load {path}: it references {e}, which is not tensor data (only weights are '
                    'read from .pth files; nothing in the file was run)') from None
  except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, IndexError, struct.error) as e:
    raise UserError(f'cannot read {path} (truncated or corrupt?): {type(e).__name__}: {e}') from None


def _read_zip(path: str):
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
    if len(pickles) != 1:
      raise UserError(f'{path} is a zip file but not one that torch.save wrote (no single <name>/data.pkl)')
    prefix = pickles[0][:-len('data.pkl')]
    names = set(archive.namelist())
    byteorder = archive.read(prefix + 'byteorder').decode() if prefix + 'byteorder' in names else 'little'
    with archive.open(pickles[0]) as f:
      return _WeightsUnpickler(f, lambda key: archive.read(f'{prefix}data/{key}'),
                               '<' if byteorder == 'little' else '>').load()


LEGACY_MAGIC = 0x1950a86a20f9469cfc6c  # the first pickle of torch's legacy format


def _read_legacy(path: str):
  """torch's format before 1.6: pickles of the magic number, the format version and the system's info, the object
  (its storages by key), the sorted list of storage keys, then each storage as an int64 element count and its bytes.
  The object is unpickled twice: once to find where it ends (its tensors left unbuilt), then with the storages."""
  with open(path, 'rb') as f:
    header = _WeightsUnpickler(f, None, '<')
    if header.load() != LEGACY_MAGIC:
      raise UserError(f'{path} is a pickle but not a torch file (no torch magic number)')
    header.load()  # the format version
    info = header.load()
    byteorder = '<' if not isinstance(info, dict) or info.get('little_endian', True) else '>'
    start = f.tell()
    skimmer = _WeightsUnpickler(f, None, byteorder, skim=True)
    skimmer.load()
    dtypes = skimmer.dtypes
    keys = _WeightsUnpickler(f, None, byteorder).load()
    data = {}
    for key in keys:
      (numel,) = struct.unpack(byteorder + 'q', f.read(8))
      data[key] = f.read(numel * dtypes[key].itemsize)
    f.seek(start)
    return _WeightsUnpickler(f, data.__getitem__, byteorder).load()


def select_state_dict(obj, key: str | None, path: str) -> dict[str, np.ndarray]:
  """The state dict inside a loaded torch file: the file itself, or its entry `key` (default: see load_weights)."""
  if not isinstance(obj, dict):
    raise UserError(f'{path} holds a {type(obj).__name__}, not a state dict')
  if key is None and not all(isinstance(v, np.ndarray) for v in obj.values()):
    key = next((k for k in STATE_DICT_KEYS if isinstance(obj.get(k), dict)), None)
    if key is None:
      raise UserError(f'{path} holds no state dict: its entries are {", ".join(map(str, obj))}; none of '
                      f'{", ".join(STATE_DICT_KEYS)} holds weights')
  if key is not None:
    if not isinstance(obj.get(key), dict):
      raise UserError(f'{path} has no state dict under {key!r}; its entries are {", ".join(map(str, obj))}')
    obj = obj[key]
  bad = [k for k, v in obj.items() if not isinstance(v, np.ndarray)]
  if bad:
    raise UserError(f'{path}: entries {", ".join(map(str, bad[:10]))} of the state dict are not tensors')
  return dict(obj)


def _strip_wrappers(state_dict: dict) -> dict:
  for prefix in WRAPPER_PREFIXES:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
      state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
  return state_dict


class _Refused(Exception):
  """A pickle that names something outside the allow-list."""


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None):
  """Stand-in for `torch._utils._rebuild_tensor_v2`: the strided view of `storage`, bounds-checked, copied."""
  del requires_grad, backward_hooks, metadata
  if not isinstance(storage, np.ndarray):
    raise pickle.UnpicklingError('tensor without storage')
  size, stride, offset = tuple(map(int, size)), tuple(map(int, stride)), int(storage_offset)
  if len(size) != len(stride) or min(size + stride + (offset,), default=0) < 0:
    raise pickle.UnpicklingError(f'invalid tensor geometry size={size} stride={stride} offset={offset}')
  if 0 in size:
    return np.zeros(size, storage.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= storage.size:  # as_strided does no bounds checks: never let a file point outside its storage
    raise pickle.UnpicklingError(f'tensor reaches element {last} of a storage of {storage.size}')
  view = np.lib.stride_tricks.as_strided(storage[offset:], size, [s * storage.itemsize for s in stride],
                                         writeable=False)
  return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  """Stand-in for `torch._utils._rebuild_parameter`: a Parameter is its data."""
  del requires_grad, backward_hooks
  return data


class _WeightsUnpickler(pickle.Unpickler):
  """Resolves only names that tensors, state dicts and timm's training checkpoints use; refuses every other.

  `read(key)` gives the bytes of storage `key`. With `skim` nothing is built: tensors are None and only the storages'
  dtypes are recorded (the legacy format's first pass)."""

  ALLOWED = {
      ('collections', 'OrderedDict'): collections.OrderedDict,
      ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
      ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
      # timm's train checkpoints keep their command line; a Namespace only stores attributes.
      ('argparse', 'Namespace'): argparse.Namespace,
  }

  def __init__(self, file, read, byteorder: str, skim: bool = False):
    super().__init__(file)
    self._read, self._byteorder, self._skim = read, byteorder, skim
    self._storages, self.dtypes = {}, {}

  def find_class(self, module, name):
    if (module, name) in self.ALLOWED:
      if self._skim and name.startswith('_rebuild'):
        return lambda *args: None
      return self.ALLOWED[module, name]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return np.dtype(_STORAGE_DTYPES[name])  # an instance, not callable: only usable as a storage's dtype
    raise _Refused(f'{module}.{name}')

  def persistent_load(self, pid):
    """Storage records ('storage', dtype, key, location, numel[, view]) -> a 1-D array of the storage's bytes."""
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == 'storage' and isinstance(pid[1], np.dtype)
            and (len(pid) == 5 or pid[5] is None)):
      raise pickle.UnpicklingError(f'unsupported persistent record {pid!r:.80}')
    dtype, key, numel = pid[1], pid[2], int(pid[4])
    self.dtypes[key] = dtype
    if self._skim:
      return None
    if key not in self._storages:
      data = self._read(key)
      if numel * dtype.itemsize > len(data):
        raise pickle.UnpicklingError(f'storage {key} holds {len(data)} bytes, not {numel} x {dtype}')
      self._storages[key] = np.frombuffer(data, dtype.newbyteorder(self._byteorder), numel).astype(dtype)
    return self._storages[key]
