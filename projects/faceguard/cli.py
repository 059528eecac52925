"""FaceGuard's protocol from the command line, on the watermark API (zoo/watermark/api.py).

  python -m projects.faceguard.cli embed --workdir=W --input=DIR --output=DIR --identity=NAME
  python -m projects.faceguard.cli verify --workdir=W --image=PATH --identity=NAME [--tau=T]

`embed` watermarks every image of DIR (read with Pillow: png, jpg, bmp, webp, tif) with NAME's watermark and writes
PNGs (lossless) of the same size to --output; it refuses to overwrite a file there. An identity's watermark is
drawn at random the first time NAME is used and kept in --identities (JSON, default W/identities.json); an existing
entry is never changed. `verify` prints one JSON line with the bitwise accuracy of the watermark read from the
image against NAME's and the verdict: real when the accuracy is at least tau, else a deepfake. tau defaults to the
value projects/faceguard/evaluate.py calibrated for W (W/tau.json).
"""
import json
import os
import secrets
import sys

import numpy as np
from absl import flags

from zoo import cli
from zoo.errors import UserError

EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')
COMMANDS = ('embed', 'verify')


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3]; a file Pillow cannot decode is a UserError naming it."""
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB'))
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise UserError(f'cannot read image {path}: {e}') from None


def identity_bits(path: str, name: str, bits: int, create: bool) -> np.ndarray:
  """NAME's watermark from the identities file; a new random one is added (create=True) when NAME is not there."""
  table = {}
  if os.path.exists(path):
    with open(path) as f:
      table = json.load(f)
  if name not in table:
    if not create:
      raise UserError(f'identity {name!r} has no watermark in {path}; watermark its images with `embed` first')
    table[name] = format(secrets.randbits(bits), f'0{bits}b')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(table, f, indent=1)
    os.replace(tmp, path)
  code = table[name]
  if len(code) != bits:
    raise UserError(f'identity {name!r} in {path} has {len(code)} bits; this watermark model uses {bits}')
  return np.array([int(c) for c in code], np.int32)


def embed(wm, input_dir: str, output_dir: str, identity: str, identities: str) -> dict:
  """Watermarks every image of `input_dir` with `identity`'s watermark into PNGs in `output_dir`; writes nothing
  when a target exists or an image cannot be read. Returns what it did (the CLI's JSON line)."""
  if not os.path.isdir(input_dir):
    raise UserError(f'--input {input_dir} is not a directory')
  names = sorted(n for n in os.listdir(input_dir) if n.lower().endswith(EXTENSIONS))
  if not names:
    raise UserError(f'no images ({", ".join(EXTENSIONS)}) in {input_dir}')
  targets = [os.path.join(output_dir, os.path.splitext(n)[0] + '.png') for n in names]
  taken = [t for t in targets if os.path.exists(t)]
  if taken:
    raise UserError(f'{taken[0]} exists (and {len(taken) - 1} more); choose another --output, nothing was written')
  images = [read_image(os.path.join(input_dir, n)) for n in names]  # all are readable before anything is written
  bits = identity_bits(identities, identity, wm.bits, create=True)
  from PIL import Image
  os.makedirs(output_dir, exist_ok=True)
  for image, target in zip(images, targets):
    Image.fromarray(wm.embed(image, bits)).save(target)
  return {'identity': identity, 'images': len(targets), 'output': output_dir}


def calibrated_tau(workdir: str) -> float:
  """The tau projects/faceguard/evaluate.py calibrated for `workdir` (WORKDIR/tau.json)."""
  calibration = os.path.join(workdir, 'tau.json')
  if not os.path.exists(calibration):
    raise UserError(f'give --tau, or calibrate one for {workdir} with python -m projects.faceguard.evaluate')
  with open(calibration) as f:
    return json.load(f)['tau']


def verify(wm, image: str, identity: str, identities: str, tau: float) -> dict:
  """The verdict on `image` claiming to show `identity` (the CLI's JSON line)."""
  bits = identity_bits(identities, identity, wm.bits, create=False)
  is_real, accuracy = wm.verify(read_image(image), bits, tau)
  return {'image': image, 'identity': identity, 'bitwise_accuracy': accuracy, 'tau': tau,
          'verdict': 'real' if is_real else 'fake'}


def define_flags():
  flags.DEFINE_string('workdir', None, 'A FaceGuard training workdir (configs/faceguard.py).')
  flags.DEFINE_string('identity', None, 'The individual whose watermark is embedded or checked.')
  flags.DEFINE_string('identities', None, 'JSON file of the identities\' watermarks (default WORKDIR/identities.json).')
  flags.DEFINE_string('input', None, 'embed: folder of images to watermark.')
  flags.DEFINE_string('output', None, 'embed: folder for the watermarked PNGs (created; existing files are kept).')
  flags.DEFINE_string('image', None, 'verify: the image to check.')
  flags.DEFINE_float('tau', None, 'verify: bitwise-accuracy threshold (default: WORKDIR/tau.json).')


def main(argv):
  FLAGS = flags.FLAGS
  if len(argv) != 2 or argv[1] not in COMMANDS:
    sys.exit(f'error: usage: python -m projects.faceguard.cli {{{"|".join(COMMANDS)}}} --workdir=W ...; '
             f'got {argv[1:]}')
  try:
    if not FLAGS.workdir or not FLAGS.identity:
      raise UserError('--workdir and --identity are required')
    if argv[1] == 'embed' and not (FLAGS.input and FLAGS.output):
      raise UserError('embed needs --input=DIR and --output=DIR')
    if argv[1] == 'verify' and not FLAGS.image:
      raise UserError('verify needs --image=PATH')
    identities = FLAGS.identities or os.path.join(FLAGS.workdir, 'identities.json')
    tau = FLAGS.tau
    if argv[1] == 'verify' and tau is None:
      tau = calibrated_tau(FLAGS.workdir)
    from zoo.watermark import api
    wm = api.load(FLAGS.workdir)
    if argv[1] == 'embed':
      report = embed(wm, FLAGS.input, FLAGS.output, FLAGS.identity, identities)
    else:
      report = verify(wm, FLAGS.image, FLAGS.identity, identities, tau)
  except UserError as e:
    sys.exit(f'error: {e}')
  print(json.dumps(report))


if __name__ == '__main__':
  define_flags()
  cli.run(main, __doc__)  # the commands' defaults: fast XLA:CPU flags, a quiet console, one-line errors
