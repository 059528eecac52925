"""Loads a zoo-export artifact with jax and numpy alone; zoo-export copies this file into the artifact as `load.py`.

  forward = runpy.run_path('ARTIFACT/load.py')['load']('ARTIFACT')
  logits = forward(images)  # NHWC float32, normalised as export.json says

It imports nothing of the zoo, so the artifact runs wherever jax does.
"""
import os

import jax
import numpy as np


def load(path: str):
  """The exported forward of the artifact in directory `path`, with its variables bound: images -> logits."""
  with open(os.path.join(path, 'model.jaxexport'), 'rb') as f:
    exported = jax.export.deserialize(f.read())
  variables = {}
  for name, value in np.load(os.path.join(path, 'variables.npz')).items():  # 'params/stem/conv/kernel'
    node = variables
    *parents, leaf = name.split('/')
    for parent in parents:
      node = node.setdefault(parent, {})
    node[leaf] = value
  return lambda images: exported.call(variables, images)
