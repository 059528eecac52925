"""Exports a trained classifier for inference outside the zoo: `zoo-export --workdir=DIR --out=PATH`, or published
weights without training: `zoo-export --pretrained=resnetrs50 --out=PATH` (a model name, hf-hub:ORG/REPO or a hub
folder, as zoo.load_pretrained reads them).

PATH (a new directory; an existing one is refused) receives:
- `model.jaxexport`: the eval forward (variables, images NHWC float32) -> logits float32, serialized by `jax.export`
  (StableHLO). With `--batch_polymorphic` the batch size is symbolic and any batch runs; else it is `--batch_size`.
- `variables.npz`: the weights evaluation uses (the EMA where the run kept one), one entry per variable named by
  its path ('params/stem/conv/kernel').
- `timm.safetensors`: the same weights under timm's names and torch's layouts, for ResNet-RS and VOLO.
- `export.json`: model, input size, classes, normalisation, and the crop and resize filter the weights were evaluated
  with.
- `load.py`: loads the artifact with jax and numpy alone (zoo/commands/export_loader.py):
  `forward = runpy.run_path('PATH/load.py')['load']('PATH')`, then `logits = forward(images)`.
"""
import json
import os
import shutil
import tempfile

from absl import flags

from zoo import cli
from zoo.commands import export_loader
from zoo.errors import UserError

FLAGS = flags.FLAGS


def export(workdir: str, out: str, batch_polymorphic: bool, batch_size: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import traverse_util
  from safetensors.numpy import save_file

  import zoo
  from zoo import checkpoint
  if os.path.exists(out):
    raise UserError(f'{out} exists; zoo-export writes a new directory and never replaces one')
  config, variables, is_ema = checkpoint.load_inference_variables(workdir, 'classification',
                                                                  train_hint='zoo-train --config=... --workdir=DIR')
  kwargs = dict(config['model_kwargs'])
  card = zoo.model_card(config['model'])
  # Training takes the class count from the dataset; the card names the classifier heads that it shapes.
  kwargs.setdefault('num_classes', zoo.registry.held_classes(config['model'], variables))
  model = zoo.create_model(config['model'], **kwargs)
  size, channels = config['input']['image_size'], config['input'].get('channels', 3)
  batch = jax.export.symbolic_shape('batch')[0] if batch_polymorphic else batch_size
  images = jax.ShapeDtypeStruct((batch, size, size, channels), jnp.float32)

  def forward(variables, images):
    return model.apply(variables, images, train=False).astype(jnp.float32)

  exported = jax.export.export(jax.jit(forward))(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                                              variables), images)
  flat = {'/'.join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(variables).items()}
  timm_weights = None
  if zoo.convert.convertible(config['model']):
    timm_weights = zoo.convert.to_timm(config['model'], variables)
  os.makedirs(out)
  with open(os.path.join(out, 'model.jaxexport'), 'wb') as f:
    f.write(exported.serialize())
  np.savez(os.path.join(out, 'variables.npz'), **flat)
  shutil.copyfile(export_loader.__file__, os.path.join(out, 'load.py'))
  if timm_weights is not None:
    save_file(timm_weights, os.path.join(out, 'timm.safetensors'))
  meta = {'model': config['model'], 'model_kwargs': kwargs, 'image_size': size, 'channels': channels,
          'batch': 'any' if batch_polymorphic else batch_size, 'layout': 'NHWC float32',
          'mean': list(config['input'].get('mean', ())), 'std': list(config['input'].get('std', ())),
          # how the weights were evaluated: the run's input (the zoo's eval resizes bilinearly), or the published one
          'crop_pct': config['input'].get('crop_pct', card.crop_pct),
          'interpolation': config['input'].get('interpolation') or 'bilinear',
          'weights': 'EMA' if is_ema else 'trained',
          'timm': card.timm_name if timm_weights is not None else None}
  with open(os.path.join(out, 'export.json'), 'w') as f:
    json.dump(meta, f, indent=1)
  return meta


def pretrained_workdir(source: str, tmp: str) -> str:
  """A workdir in `tmp` holding the published weights `source` as zoo-convert writes them."""
  from zoo import pretrained
  weights = pretrained.resolve(source)
  pretrained.save_converted(tmp, weights, weights.overrides, source)
  return tmp


def main(argv):
  if len(argv) > 1:
    raise UserError(f'unexpected arguments {argv[1:]}')
  if (FLAGS.workdir is None) == (FLAGS.pretrained is None):
    raise UserError('give one of --workdir (a trained or converted classifier) and --pretrained (published weights)')
  if os.path.exists(FLAGS.out):  # before anything is downloaded or converted
    raise UserError(f'{FLAGS.out} exists; zoo-export writes a new directory and never replaces one')
  with tempfile.TemporaryDirectory() as tmp:
    workdir = FLAGS.workdir or pretrained_workdir(FLAGS.pretrained, os.path.join(tmp, 'converted'))
    print(json.dumps(export(workdir, FLAGS.out, FLAGS.batch_polymorphic, FLAGS.batch_size)))


def run() -> None:
  flags.DEFINE_string('workdir', None, 'A classification training workdir (or zoo-convert output).')
  flags.DEFINE_string('pretrained', None, 'Published weights instead of a workdir: a model name (its card\'s '
                      'weights), hf-hub:ORG/REPO or a folder in the hub\'s layout.')
  flags.DEFINE_string('out', None, 'New directory for the artifact.')
  flags.DEFINE_bool('batch_polymorphic', False, 'Export with a symbolic batch size.')
  flags.DEFINE_integer('batch_size', 1, 'The fixed batch size without --batch_polymorphic.')
  flags.mark_flags_as_required(['out'])
  cli.run(main, __doc__)
