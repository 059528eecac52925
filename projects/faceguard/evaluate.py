"""FaceGuard's evaluation with real codecs and simulated deepfakes: `python -m projects.faceguard.evaluate`.

Yang et al., "FaceGuard: Proactive Deepfake Detection" (2021), embed an identity's watermark in its published
images, robust to ordinary post-processing and fragile to deepfake manipulation; an image whose watermark no
longer matches is flagged. This script:
1. trains (or finds, in --workdir) the watermark (configs/faceguard.py) and the stand-in deepfake generator
   (configs/faceguard.py:autoencoder), both at --image_size for --train_steps: reduced recipes that fit a CPU;
2. watermarks each of the 20 held-out lfw faces with its own random 32-bit identity (through zoo/watermark/api.py,
   as a user would) and measures imperceptibility: PSNR / SSIM of the published 8-bit image against the cover;
3. post-processes the published images with Pillow, the real non-differentiable operations: JPEG at quality 50..90,
   Gaussian blur of sigma 0.5..2, centre crop keeping 50..90 % of each side, resize by 0.5..2x; and reports the
   bitwise accuracy of the extracted watermark for each setting (and for the covers, which carry none);
4. simulates deepfake manipulation two ways: face replacement (the face region, a feathered ellipse, replaced by
   another held-out person's face) and re-synthesis (the face passed through the autoencoder, which never saw a
   watermark);
5. calibrates tau on the 80 *training* faces, watermarked and post-processed by every setting: the largest
   threshold (bitwise accuracy at or above it is "real") that flags at most 1 % of them as fake. With that tau it
   reports the false-positive rate on the post-processed held-out faces and the true-positive rate (deepfakes
   flagged) of each manipulation; writes WORKDIR/tau.json (the CLI's default tau, projects/faceguard/cli.py), and
   results.json, table.md and figure.png to --out (default: this folder, beside its README).
"""
import io
import json
import os

import numpy as np
from absl import flags

from projects import common
from zoo import cli
from zoo.watermark import manipulation

JPEG_QUALITIES = (50, 60, 70, 80, 90)
BLUR_SIGMAS = (0.5, 1.0, 1.5, 2.0)
CROP_FRACTIONS = (0.5, 0.6, 0.7, 0.8, 0.9)
RESIZE_SCALES = (0.5, 0.75, 1.5, 2.0)
MAX_FPR = 0.01
# A reused workdir must hold a model of the same task, size, layout and fragility (trainer.train_unless_done).
MATCHED_KEYS = (('task',), ('input', 'image_size'), ('model_kwargs', 'message_layout'), ('loss', 'fragile'))


# ---- real post-processing (Pillow) and simulated manipulations, on uint8 [H, W, 3] ----

def pillow_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
  from PIL import Image
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, 'JPEG', quality=quality)
  buffer.seek(0)
  with Image.open(buffer) as decoded:
    return np.asarray(decoded.convert('RGB'))


def pillow_blur(image: np.ndarray, sigma: float) -> np.ndarray:
  from PIL import Image, ImageFilter
  return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=sigma)))


def centre_crop(image: np.ndarray, fraction: float) -> np.ndarray:
  h, w = image.shape[:2]
  ch, cw = max(1, round(fraction * h)), max(1, round(fraction * w))
  top, left = (h - ch) // 2, (w - cw) // 2
  return image[top:top + ch, left:left + cw]


def pillow_resize(image: np.ndarray, scale: float) -> np.ndarray:
  from PIL import Image
  h, w = image.shape[:2]
  return np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR))


def post_processing() -> dict:
  """{setting name: function uint8 image -> uint8 image} of every evaluated post-processing."""
  ops = {'none': lambda x: x}
  ops.update({f'jpeg q{q}': (lambda x, q=q: pillow_jpeg(x, q)) for q in JPEG_QUALITIES})
  ops.update({f'blur sigma {s:g}': (lambda x, s=s: pillow_blur(x, s)) for s in BLUR_SIGMAS})
  ops.update({f'crop {round(100 * f)}%': (lambda x, f=f: centre_crop(x, f)) for f in CROP_FRACTIONS})
  ops.update({f'resize {s:g}x': (lambda x, s=s: pillow_resize(x, s)) for s in RESIZE_SCALES})
  return ops


def replace_face(target: np.ndarray, source: np.ndarray) -> np.ndarray:
  """uint8 `target` with its face region replaced by `source`'s (same size): face replacement, simulated."""
  return np.round(manipulation.replace_face(target.astype(np.float32), source.astype(np.float32))).astype(np.uint8)


# ---- the experiment ----

def faceguard_config(image_size: int, steps: int, overrides: dict, variant: str = ''):
  from configs import faceguard
  from zoo.cli import apply_overrides
  c = faceguard.get_config(variant)
  c.input.image_size = image_size
  c.input.photo_stride = image_size // 2
  c.num_train_steps = steps
  c.eval_every_steps = c.checkpoint_every_steps = max(steps // 4, 1)
  return apply_overrides(c, overrides)


def resynthesise(workdir: str):
  """uint8 [N, H, W, 3] -> the autoencoder's re-synthesis, uint8."""
  import jax
  import zoo
  from zoo import checkpoint
  config, variables = checkpoint.load_variables(workdir, 'autoencoding')
  model = zoo.create_model(config['model'], **config['model_kwargs'])
  apply = jax.jit(lambda x: model.apply(variables, x))
  return lambda images: np.round(np.clip(np.asarray(apply(images.astype(np.float32) / 255.0)), 0, 1) * 255
                                 ).astype(np.uint8)


def calibrate_tau(accuracies: np.ndarray, bits: int) -> float:
  """The largest threshold on the L-bit accuracy grid that calls at most MAX_FPR of these real images fake."""
  grid = np.arange(bits + 1) / bits
  allowed = [t for t in grid if np.mean(accuracies < t) <= MAX_FPR]
  return float(max(allowed))


def run(workdir: str, ae_workdir: str, image_size: int, train_steps: int, ae_steps: int, overrides: dict,
        seed: int = 0):
  """Trains (or finds) both networks and evaluates the watermark (module docstring). Returns (the results: JSON of
  results.json, the figure's example images, the watermark), and writes WORKDIR/tau.json."""
  from zoo.data import faces
  from zoo.metrics import psnr, ssim
  from zoo.watermark import api
  from zoo import trainer
  for config, path in ((faceguard_config(image_size, train_steps, overrides), workdir),
                       (faceguard_config(image_size, ae_steps, {}, 'autoencoder'), ae_workdir)):
    trainer.train_unless_done(config, path, MATCHED_KEYS)
  wm = api.load(workdir)
  rng = np.random.default_rng(seed)
  ops = post_processing()

  def watermark(covers):
    bits = rng.integers(0, 2, (len(covers), wm.bits))
    return bits, np.stack([wm.embed(c, b) for c, b in zip(covers, bits)])

  # tau from the training faces, every post-processing
  train_covers = faces.to_uint8(faces.lfw('train', image_size))
  train_bits, train_marked = watermark(train_covers)
  calibration = np.array([wm.bitwise_accuracy(op(x), b) for op in ops.values()
                          for x, b in zip(train_marked, train_bits)])
  tau = calibrate_tau(calibration, wm.bits)

  covers = faces.to_uint8(faces.lfw('test', image_size))
  bits, marked = watermark(covers)
  as_float = lambda x: x.astype(np.float32) / 255.0  # noqa: E731
  imperceptibility = {'psnr': float(np.mean(psnr(as_float(marked), as_float(covers)))),
                      'ssim': float(np.mean(ssim(as_float(marked), as_float(covers))))}
  robustness = {}
  for name, op in ops.items():
    acc = np.array([wm.bitwise_accuracy(op(x), b) for x, b in zip(marked, bits)])
    unmarked = np.array([wm.bitwise_accuracy(op(x), b) for x, b in zip(covers, bits)])
    robustness[name] = {'bit_accuracy': float(acc.mean()), 'min_bit_accuracy': float(acc.min()),
                        'fpr': float(np.mean(acc < tau)), 'cover_bit_accuracy': float(unmarked.mean())}
  swapped = np.stack([replace_face(x, covers[(i + 1) % len(covers)]) for i, x in enumerate(marked)])
  regenerated = resynthesise(ae_workdir)(marked)
  manipulations = {}
  for name, fakes in (('face replacement', swapped), ('autoencoder re-synthesis', regenerated)):
    acc = np.array([wm.bitwise_accuracy(x, b) for x, b in zip(fakes, bits)])
    manipulations[name] = {'bit_accuracy': float(acc.mean()), 'max_bit_accuracy': float(acc.max()),
                           'tpr': float(np.mean(acc < tau)), 'psnr_to_published': float(np.mean(
                               psnr(as_float(fakes), as_float(marked))))}
  real = np.array([r['fpr'] for r in robustness.values()])
  results = {'image_size': image_size, 'train_steps': train_steps, 'bits': wm.bits, 'tau': tau,
             'calibration_fpr': float(np.mean(calibration < tau)), 'test_images': len(covers),
             'imperceptibility': imperceptibility, 'robustness': robustness, 'manipulations': manipulations,
             'overall_fpr': float(real.mean())}
  examples = {'cover': covers[0], 'published': marked[0], 'jpeg q50': ops['jpeg q50'](marked[0]),
              'face replacement': swapped[0], 'autoencoder re-synthesis': regenerated[0], 'bits': bits[0]}
  with open(os.path.join(workdir, 'tau.json'), 'w') as f:
    json.dump({'tau': tau, 'max_fpr': MAX_FPR, 'calibrated_on': 'lfw train faces, every post-processing'}, f)
  return results, examples, wm


def table(results: dict) -> str:
  lines = ['| post-processing (Pillow) | bitwise accuracy | worst image | real flagged fake | no watermark |',
           '|---|---|---|---|---|']
  for name, r in results['robustness'].items():
    lines.append(f'| {name} | {r["bit_accuracy"]:.3f} | {r["min_bit_accuracy"]:.3f} | {100 * r["fpr"]:.0f}% | '
                 f'{r["cover_bit_accuracy"]:.3f} |')
  lines += ['', '| deepfake (simulated) | bitwise accuracy | best image | detected (TPR) | PSNR to published |',
            '|---|---|---|---|---|']
  for name, r in results['manipulations'].items():
    lines.append(f'| {name} | {r["bit_accuracy"]:.3f} | {r["max_bit_accuracy"]:.3f} | {100 * r["tpr"]:.0f}% | '
                 f'{r["psnr_to_published"]:.2f} dB |')
  imp = results['imperceptibility']
  lines += ['', f'Watermarked vs cover: PSNR {imp["psnr"]:.2f} dB, SSIM {imp["ssim"]:.4f} '
            f'({results["test_images"]} held-out faces, {results["image_size"]}x{results["image_size"]}, '
            f'{results["bits"]} bits). tau = {results["tau"]:.4f} (calibrated on the training faces: '
            f'{100 * results["calibration_fpr"]:.1f}% of them flagged); false positives over all post-processings '
            f'of the held-out faces: {100 * results["overall_fpr"]:.1f}%.']
  return '\n'.join(lines)


def plot(examples: dict, wm, path: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  cover, bits = examples['cover'], examples['bits']
  panels = [('cover', cover), ('published', examples['published']),
            ('|published - cover| x 10', np.clip(10 * np.abs(examples['published'].astype(int) - cover), 0, 255)
             .astype(np.uint8)), ('JPEG q50', examples['jpeg q50']),
            ('face replacement', examples['face replacement']),
            ('autoencoder re-synthesis', examples['autoencoder re-synthesis'])]
  fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0))
  for ax, (name, image) in zip(axes, panels):
    ax.imshow(image)
    title = name if name.startswith('|') else f'{name}\nbit acc. {wm.bitwise_accuracy(image, bits):.2f}'
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def define_flags():
  flags.DEFINE_string('workdir', 'workdirs/faceguard/watermark', 'The watermark is trained (or found) here.')
  flags.DEFINE_string('ae_workdir', 'workdirs/faceguard/autoencoder', 'The deepfake stand-in, likewise.')
  flags.DEFINE_integer('image_size', 32, 'Side of the faces (lfw_subset is 25x25).')
  flags.DEFINE_integer('train_steps', 8000, 'Training steps of the watermark.')
  flags.DEFINE_integer('ae_steps', 1500, 'Training steps of the autoencoder.')
  flags.DEFINE_string('config_overrides', '{}', 'JSON {dotted key: value} for the watermark config.')
  flags.DEFINE_string('out', common.project_dir(__file__), 'Where results.json, table.md and figure.png go.')


def main(argv):
  FLAGS = flags.FLAGS
  def experiment():
    results, examples, wm = run(FLAGS.workdir, FLAGS.ae_workdir, FLAGS.image_size, FLAGS.train_steps,
                                FLAGS.ae_steps, common.overrides(FLAGS.config_overrides))
    return results, table(results), lambda path: plot(examples, wm, path)
  common.conclude(argv, experiment, FLAGS.out, 'figure.png')


if __name__ == '__main__':
  define_flags()
  cli.run(main, __doc__)  # the commands' defaults: fast XLA:CPU flags, a quiet console, one-line errors
