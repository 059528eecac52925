"""Classifies images with published weights: `zoo-predict --pretrained=resnetrs50 IMAGE...` (or
`python -m zoo.commands.predict ...`) prints each image's top classes with their probabilities:

  chelsea.png
    0.6124  tabby, tabby cat  (n02123045)
    ...

`--pretrained` is what zoo.load_pretrained reads (a model name, a published tag, hf-hub:ORG/REPO, a hub folder, or
a weights file with --model). Each image is prepared as the weights are evaluated (their resize filter, crop, mean
and std). Classes are named by `--class_index` (zoo.data.sources.read_class_index), by default the ImageNet classes
that ship with the zoo when the weights have 1,000 outputs, else by their index. An image that cannot be read or
decoded is one error line, before anything compiles.
"""
import os

from absl import flags

from zoo import cli
from zoo.errors import DatasetError, UserError

FLAGS = flags.FLAGS
BATCH = 8  # images per forward pass; the last batch is padded, so one compilation serves every call


def define_flags() -> None:
  flags.DEFINE_string('pretrained', 'resnetrs50', 'The weights: a model name, a published tag, hf-hub:ORG/REPO, a '
                      'hub folder or a weights file (with --model).')
  flags.DEFINE_string('model', None, 'With --pretrained=FILE: the zoo model the weights are of.')
  flags.DEFINE_string('model_kwargs', '{}', 'create_model\'s overrides as JSON, e.g. \'{"dtype": "bfloat16"}\'.')
  flags.DEFINE_integer('top', 5, 'Classes printed per image.')
  flags.DEFINE_string('class_index', None, 'Names of the weights\' classes: a file of one class per line (its name '
                      'first, then its description) or "imagenet"; by default "imagenet" for 1,000 classes.')


def read_images(paths: list[str]):
  """The decoded uint8 RGB images at `paths`; a missing or undecodable file is one UserError line."""
  from zoo.data import transforms
  images = []
  for path in paths:
    try:
      with open(path, 'rb') as f:
        images.append(transforms.decode(f.read(), 3))
    except OSError as e:
      raise UserError(f'cannot read {path}: {e.strerror}') from None
    except DatasetError:
      raise UserError(f'{path} is not an image that OpenCV decodes ({os.path.getsize(path)} bytes)') from None
  return images


def top_classes(source: str, images, top: int = 5, class_index: str | None = None, model: str | None = None,
                model_kwargs: dict | None = None) -> list[list[tuple[float, str, str]]]:
  """For each decoded image, its `top` most probable classes of the weights `source`, most probable first, as
  (probability, class name, description)."""
  import jax
  import numpy as np

  from zoo import pretrained, registry
  from zoo.data import sources
  weights = pretrained.resolve(source, model)
  prep = weights.preprocessing
  if prep is None:
    raise UserError(f'{weights.model} is no classifier')
  kwargs = {**weights.overrides, **(model_kwargs or {})}
  network, variables = registry.create_model(weights.model, **kwargs), pretrained.load(weights, **kwargs)
  classes = registry.held_classes(weights.model, variables)
  spec = class_index or (sources.IMAGENET if classes == 1000 else None)
  names = sources.read_class_index(spec) if spec else [(str(i), '') for i in range(classes)]
  if len(names) != classes:
    raise UserError(f'class index {spec} lists {len(names)} classes but the weights have {classes}')
  inputs = prep.normalise(np.stack([prep(image) for image in images]))
  forward = jax.jit(lambda v, x: jax.nn.softmax(network.apply(v, x, train=False).astype(np.float32)))
  probabilities = []
  for start in range(0, len(inputs), BATCH):
    chunk = inputs[start:start + BATCH]
    padded = np.concatenate([chunk, np.zeros((BATCH - len(chunk), *chunk.shape[1:]), chunk.dtype)])
    probabilities.append(np.asarray(forward(variables, padded))[:len(chunk)])
  probabilities = np.concatenate(probabilities)
  return [[(float(p[i]), *names[i]) for i in np.argsort(-p, kind='stable')[:top]] for p in probabilities]


def main(argv):
  paths = argv[1:]
  if not paths:
    raise UserError('name the images to classify: zoo-predict --pretrained=resnetrs50 IMAGE...')
  if FLAGS.top < 1:
    raise UserError(f'--top must be at least 1, got {FLAGS.top}')
  images = read_images(paths)
  results = top_classes(FLAGS.pretrained, images, FLAGS.top, FLAGS.class_index, FLAGS.model,
                        cli.json_object(FLAGS.model_kwargs, '--model_kwargs'))
  for path, classes in zip(paths, results):
    print(path)
    for probability, name, description in classes:
      print(f'  {probability:.4f}  {description or name}' + (f'  ({name})' if description else ''))


def run() -> None:
  define_flags()
  cli.run(main, __doc__)


if __name__ == '__main__':
  run()
