"""Throughput of a zoo model on this machine: a jitted eval forward and a jitted training step (value_and_grad).

  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution \\
    python tools/model_speed.py --model volo_d1 --batch 8 --image_size 224 --runs 5

Prints the median seconds per batch and images per second of each, after a compile and a warm-up call. Other
processes on the same cores distort the numbers: each timed call waits until the CPUs are idle and is kept only if
no other process ran meanwhile (`--no-wait` times regardless). The training loss is cross-entropy on 'logits', plus
half the mean cross-entropy of 'aux_logits' for models that return them (VOLO's token labelling); labels are fixed.
"""
import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import zoo  # noqa: E402

ME = psutil.Process()


def busy_seconds():
  """(CPU seconds of all processes, of this one) so far."""
  t = psutil.cpu_times()
  return t.user + t.system + t.nice, sum(ME.cpu_times()[:4])


def time_calls(fn, args, runs: int, wait: bool):
  jax.block_until_ready(fn(*args))  # compile
  jax.block_until_ready(fn(*args))  # warm-up
  kept, tried = [], 0
  while len(kept) < runs and tried < 4 * runs:
    start_wait = time.time()
    while wait and psutil.cpu_percent(interval=0.5) > 8 and time.time() - start_wait < 600:
      pass
    (all0, me0), t0 = busy_seconds(), time.time()
    jax.block_until_ready(fn(*args))
    seconds = time.time() - t0
    all1, me1 = busy_seconds()
    tried += 1
    if not wait or (all1 - all0) - (me1 - me0) < 0.05 * seconds:  # no one else ran
      kept.append(seconds)
  return kept, tried


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--model', default='volo_d1')
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--image_size', type=int, default=224)
  p.add_argument('--runs', type=int, default=5)
  p.add_argument('--model_kwargs', type=json.loads, default={})
  p.add_argument('--no-wait', dest='wait', action='store_false')
  args = p.parse_args()
  kwargs = dict(args.model_kwargs)
  if 'image_size' in zoo.model_fields(args.model):
    kwargs.setdefault('image_size', args.image_size)
  model = zoo.create_model(args.model, **kwargs)
  x = jax.random.normal(jax.random.key(1), (args.batch, args.image_size, args.image_size, 3))
  variables = jax.jit(model.init)(jax.random.key(0), x)
  labels = jnp.arange(args.batch) % 10

  def loss_fn(params, stats, x, key):
    out, updates = model.apply({'params': params, 'batch_stats': stats}, x, train=True, rngs={'dropout': key},
                               mutable=['batch_stats'])
    out = out if isinstance(out, dict) else {'logits': out}
    loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out['logits']), labels[:, None], 1))
    if 'aux_logits' in out:
      loss += 0.5 * -jnp.mean(jax.nn.log_softmax(out['aux_logits'])[..., 0])
    return loss, updates

  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  for what, fn, fn_args in (('forward', forward, (variables, x)),
                            ('train step', step, (variables['params'], variables['batch_stats'], x,
                                                  jax.random.key(2)))):
    kept, tried = time_calls(fn, fn_args, args.runs, args.wait)
    median = float(np.median(kept))
    print(f'{args.model} batch {args.batch} at {args.image_size}, {what}: {median:.3f} s -> '
          f'{args.batch / median:.2f} img/s (median of {len(kept)} runs, {tried} tried: '
          f'{", ".join(f"{t:.3f}" for t in kept)})', flush=True)


if __name__ == '__main__':
  main()
