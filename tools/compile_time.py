"""Compile time (and step time) of a classifier's training step: forward, backward, BN update, SGD.

  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution \
  python tools/compile_time.py --model=resnetrs420 --image_size=320 --batch_size=1 --scan_blocks --steps=2

Prints one JSON line: lower_s, compile_s and the median step time after one warm-up step.
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import zoo  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model', default='resnetrs420')
  p.add_argument('--image_size', type=int, default=320)
  p.add_argument('--batch_size', type=int, default=1)
  p.add_argument('--scan_blocks', action='store_true')
  p.add_argument('--steps', type=int, default=0, help='timed steps after compiling (0: compile only)')
  args = p.parse_args()
  model = zoo.create_model(args.model, scan_blocks=args.scan_blocks, stochastic_depth_rate=0.1)
  images = jnp.asarray(np.random.RandomState(0).randn(args.batch_size, args.image_size, args.image_size, 3),
                       jnp.float32)
  labels = jnp.arange(args.batch_size) % model.num_classes

  def train_step(params, batch_stats, rng):
    def loss_fn(p):
      logits, updates = model.apply({'params': p, 'batch_stats': batch_stats}, images, train=True,
                                    rngs={'dropout': rng}, mutable=['batch_stats'])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates['batch_stats']
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return jax.tree.map(lambda w, g: w - 0.01 * g, params, grads), stats, loss

  shapes = jax.eval_shape(model.init, jax.random.key(0), images[:1])
  t = time.perf_counter()
  lowered = jax.jit(train_step, donate_argnums=(0, 1)).lower(shapes['params'], shapes['batch_stats'],
                                                             jax.random.key(1))
  lower_s = time.perf_counter() - t
  t = time.perf_counter()
  step = lowered.compile()
  result = dict(model=args.model, image_size=args.image_size, batch_size=args.batch_size,
                scan_blocks=args.scan_blocks, lower_s=round(lower_s, 2), compile_s=round(time.perf_counter() - t, 2))
  if args.steps:
    variables = model.init(jax.random.key(0), images[:1])
    params, stats = variables['params'], variables['batch_stats']
    times = []
    for i in range(args.steps + 1):
      t = time.perf_counter()
      params, stats, loss = step(params, stats, jax.random.key(i))
      loss.block_until_ready()
      times.append(time.perf_counter() - t)
    result['step_s_median'] = round(float(np.median(times[1:])), 3)
  print(json.dumps(result))


if __name__ == '__main__':
  main()
