"""Throughput of the zoo's classifiers on any JAX backend; one JSON line per measurement.

  zoo-benchmark --model=resnetrs50 --image_size=160 --batch_size=8 --mode=infer|train \
      [--dtype=bfloat16] [--parallelism=pmap|shard_map] [--steps=10] [--warmup=2] \
      [--model_kwargs='{"scan_blocks": true}']
  zoo-benchmark --all --mode=infer      # every registered classifier at its default resolution
  zoo-benchmark --mode=input --model=volo_d1 --data_dir=DIR [--synthetic=500] [--workers=N] [--threads=1]

`input` times the training input of the model's recipe on an image folder (or --dataset), decoded into uint8
batches (zoo/data/input_speed.py); --synthetic writes a new folder of photograph-sized JPEGs first.

`infer` is the jitted eval forward (BatchNorm from its running statistics). `train` is the trainer's own step
(zoo/trainer.py: forward, backward, gradient mean over the devices, the optax update and the EMA) with the recipe's
optimiser and loss from the config its model card names (configs/resnet_rs.py, configs/volo.py, read from the working
directory: run it from the repository root), on a synthetic batch of the global `batch_size`, split over the local
devices by pmap or shard_map as in training. The function is lowered and compiled once (compile_s), called `warmup`
times, then `steps` times, each call timed alone up to `block_until_ready`: images_per_sec is the median over those
calls, with the slowest and fastest call. flops_per_image comes from XLA's cost analysis of the lowered step (see
`build`); achieved FLOP/s is that times images_per_sec, and peak_fraction divides it by the peak measured in the same
run: a square matmul in the same dtype on the same devices. peak_memory_bytes is what the backend reports (GPU / TPU;
null on CPU); xla_flags the XLA_FLAGS in effect (zoo/cli.py adds the fast XLA:CPU flags).
"""
import functools
import json
import os
import statistics
import time

from absl import flags

from zoo import cli
from zoo.errors import UserError

FLAGS = flags.FLAGS
MODES = ('infer', 'train', 'input')
DTYPES = ('float32', 'bfloat16')


def classifiers() -> list[str]:
  """Registered models whose card's task is classification."""
  import zoo
  return [m for m in zoo.list_models() if zoo.model_card(m).task == 'classification']


def family_config(model: str, image_size: int | None):
  """(config of `model`'s recipe, image size): the recipe its card names ('configs/resnet_rs.py:50-160'), with the
  size its argument ends with replaced by `image_size`; that defaults to the card's input size, the one its released
  weights are evaluated at."""
  import zoo
  card = zoo.model_card(model)
  if card.task != 'classification':
    raise UserError(f'zoo-benchmark measures the classifiers ({", ".join(classifiers())}), not {model!r}')
  size = image_size or card.input_size
  path, _, arg = card.recipe.partition(':')
  try:
    return cli.config_module(path).get_config(f'{arg.rsplit("-", 1)[0]}-{size}'), size
  except ValueError as e:  # the config's own check of the resolution
    raise UserError(str(e)) from None


@functools.cache
def matmul_peak(dtype, devices: tuple, repeats: int = 5) -> float:
  """FLOP/s of an n x n matmul in `dtype` on every device at once (median of `repeats` calls): the peak that the
  model's FLOP/s is compared with, measured once per process (`--all` compares every model with the same peak). n is
  8192 on accelerators, where a smaller product is too short to fill the chip (n=2048 measured 80-107 TFLOP/s in
  bfloat16 on an H200, whose products reach about 790). On CPU, where the host devices share the cores, the devices'
  products together are one 2048 x 2048 product (n = 1024 on 8 devices; docs/benchmark.md)."""
  import jax
  if devices[0].platform == 'cpu':
    n = int(2048 / len(devices) ** (1 / 3)) // 128 * 128
  else:
    n = 8192
  x = jax.pmap(lambda k: jax.random.normal(k, (n, n), dtype), devices=devices)(
      jax.random.split(jax.random.key(0), len(devices)))
  product = jax.pmap(lambda a: a @ a, devices=devices)
  jax.block_until_ready(product(x))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(product(x))
    times.append(time.perf_counter() - t)
  return 2.0 * n ** 3 * len(devices) / statistics.median(times)


def _cost_flops(stage) -> float | None:
  """FLOPs of a compiled or lowered function by XLA's cost analysis (None where the backend has none)."""
  cost = stage.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = (cost or {}).get('flops')
  return float(flops) if flops and flops > 0 else None


def build(model: str, image_size: int | None, batch_size: int, mode: str, dtype: str, parallelism: str,
          model_kwargs: dict):
  """(compiled function, its arguments, (outputs, args) -> the next call's args, images per device, compile
  seconds, the DataParallel, FLOPs of one call)."""
  step = _step(model, image_size, batch_size, mode, dtype, parallelism, model_kwargs)
  fn, args, advance, _, dp, per_device = step
  t = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - t
  flops = step_flops(model, image_size, batch_size, mode, dtype, parallelism, model_kwargs, step)
  return compiled, args, advance, per_device, compile_s, dp, flops


def step_flops(model: str, image_size: int | None, batch_size: int, mode: str, dtype: str, parallelism: str,
               model_kwargs: dict, step: tuple | None = None) -> float | None:
  """FLOPs of one call of the step on one device, from XLA's cost analysis of the lowered step (`step`: _step's result
  for these arguments, if built already), before the backend's compiler, of its state's shapes alone (nothing is
  compiled): on GPU the compiled module hands convolutions and matmuls to cuDNN / cuBLAS custom calls, which that
  analysis does not count (RS-50's training step read 0.27 GFLOP per image compiled on an H200, 13.3 lowered). It
  counts a loop body once, so for a model that scans its blocks (the deep ResNet-RS members by default) the unrolled
  step is lowered instead, which is quick."""
  fn, args, _, config, _, _ = step or _step(model, image_size, batch_size, mode, dtype, parallelism, model_kwargs,
                                            abstract=True)
  if config.model_kwargs.get('scan_blocks'):
    unrolled = {**model_kwargs, 'scan_blocks': False}
    fn, args = _step(model, image_size, batch_size, mode, dtype, parallelism, unrolled, abstract=True)[:2]
  return _cost_flops(fn.lower(*args))


def _step(model: str, image_size: int | None, batch_size: int, mode: str, dtype: str, parallelism: str,
          model_kwargs: dict, abstract: bool = False):
  """(the function zoo-benchmark times, its arguments, the advance function, the config, the DataParallel, images
  per device). With `abstract`, the state among the arguments is its shapes only: enough to lower the function."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from zoo import trainer
  from zoo.parallel import DataParallel, check_batch_size
  from zoo.tasks.classification import ClassificationTask
  config, size = family_config(model, image_size)
  config.model = model
  config.batch_size = batch_size
  config.input.image_size = size
  config.model_kwargs.dtype = dtype
  config.model_kwargs.update(model_kwargs)
  config.parallelism = parallelism
  dp = DataParallel(parallelism)
  local_batch = check_batch_size(batch_size)
  task = ClassificationTask(config, num_classes=1000)
  rng = np.random.default_rng(0)
  # Training batches hold uint8 images, as the input pipeline sends them (the step normalises them); the forward
  # of `infer` takes normalised float32 images, as exported models do.
  images = rng.integers(0, 256, (local_batch, size, size, 3), np.uint8)
  batch = {'image': images if mode == 'train' else np.asarray(task.images({'image': images})),
           'label': rng.integers(0, 1000, local_batch).astype(np.int32)}
  batch = dp.put_batch(batch)
  tx = trainer.optimizer(config, trainer.learning_rate_schedule(config, 1000, 100_000), task.weight_decay_mask)
  state = trainer.initial_state(task, tx, jax.random.key(config.seed), abstract)
  place = dp.state_shapes if abstract else dp.put_state
  if mode == 'train':
    fn = dp.compile(functools.partial(trainer.train_step, task=task, tx=tx, decay=config.ema_decay),
                    num_sharded=1, num_replicated=1)
    args = (place(state), batch, jax.random.key(1))
    advance = lambda out, args: (out[0],) + args[1:]  # noqa: E731  (the next call takes the new state)
  else:
    variables = {'params': state.params, 'batch_stats': state.batch_stats}

    def forward(variables, batch):
      return task.model.apply(variables, batch['image'], train=False).astype(jnp.float32)

    fn = dp.compile(forward, num_sharded=1, donate_state=False, sharded_output=True)
    args = (place(variables), batch)
    advance = lambda out, args: args  # noqa: E731
  return fn, args, advance, config, dp, local_batch // len(dp.local_devices)


def _significant(x: float, digits: int = 4) -> float:
  """`x` to `digits` significant digits: FLOP counts span a small test model's 0.01 GFLOP to RS-420's 100s."""
  return float(f'{x:.{digits}g}')


def measure(model: str, image_size: int | None, batch_size: int, mode: str, dtype: str, parallelism: str,
            steps: int, warmup: int, model_kwargs: dict | None = None) -> dict:
  import jax
  compiled, args, advance, per_device, compile_s, dp, flops = build(model, image_size, batch_size, mode, dtype,
                                                                    parallelism, model_kwargs or {})
  for _ in range(warmup):
    args = advance(jax.block_until_ready(compiled(*args)), args)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t)
    args = advance(out, args)
  step_s = statistics.median(times)
  flops_per_image = flops / per_device if flops else None
  peak = matmul_peak(jax.numpy.dtype(dtype), tuple(dp.local_devices))
  rate = batch_size / step_s
  memory = dp.local_devices[0].memory_stats() or {}
  return {
      'model': model, 'image_size': args[1]['image'].shape[-2], 'batch_size': batch_size, 'mode': mode,
      'dtype': dtype, 'parallelism': parallelism, 'backend': jax.default_backend(),
      'device': dp.local_devices[0].device_kind, 'devices': len(dp.local_devices),
      'images_per_sec': round(rate, 2), 'images_per_sec_min': round(batch_size / max(times), 2),
      'images_per_sec_max': round(batch_size / min(times), 2), 'step_s': round(step_s, 4), 'steps': steps,
      'compile_s': round(compile_s, 2),
      'gflops_per_image': _significant(flops_per_image / 1e9) if flops_per_image else None,
      'achieved_gflops_per_sec': _significant(flops_per_image * rate / 1e9) if flops_per_image else None,
      'peak_gflops_per_sec': round(peak / 1e9, 1),
      'peak_fraction': _significant(flops_per_image * rate / peak) if flops_per_image else None,
      'peak_memory_bytes': memory.get('peak_bytes_in_use'), 'model_kwargs': model_kwargs or {},
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
  }


def main(argv):
  if len(argv) > 1:
    raise UserError(f'unexpected arguments {argv[1:]}')
  import zoo
  from zoo import faults
  if FLAGS.mode not in MODES or FLAGS.dtype not in DTYPES:
    raise UserError(f'--mode must be one of {MODES} and --dtype one of {DTYPES}, got {FLAGS.mode!r}, {FLAGS.dtype!r}')
  kwargs = cli.json_object(FLAGS.model_kwargs, '--model_kwargs')
  if FLAGS.mode == 'input':
    print(json.dumps(measure_input()), flush=True)
    return
  if FLAGS.all:
    models = [(m, None) for m in classifiers()]
  else:
    zoo.create_model(FLAGS.model, **kwargs)  # an unknown name or field fails here, in one line
    models = [(FLAGS.model, FLAGS.image_size or None)]
  for model, size in models:
    with faults.out_of_memory_explained(model, FLAGS.batch_size, {'dtype': FLAGS.dtype, 'remat': False, **kwargs},
                                        size):
      result = measure(model, size, FLAGS.batch_size, FLAGS.mode, FLAGS.dtype, FLAGS.parallelism, FLAGS.steps,
                       FLAGS.warmup, kwargs)
    print(json.dumps(result), flush=True)


def measure_input() -> dict:
  """--mode=input: the training input of --model's recipe at --image_size and --batch_size on --dataset (see
  zoo/data/input_speed.py)."""
  import tempfile
  from zoo.data import input_speed
  config, _ = family_config(FLAGS.model, FLAGS.image_size or None)
  data_dir = FLAGS.data_dir
  if FLAGS.synthetic:
    data_dir = input_speed.synthetic_folder(data_dir or tempfile.mkdtemp(prefix='zoo-synthetic-'), FLAGS.synthetic)
  config.dataset, config.data_dir, config.train_split = FLAGS.dataset, data_dir, 'train'
  config.batch_size = FLAGS.batch_size
  config.input.workers, config.input.threads = FLAGS.workers, FLAGS.threads
  return {'model': FLAGS.model, **input_speed.measure(config, FLAGS.steps, FLAGS.repeats), 'data_dir': data_dir}


def define_step_flags(mode: str) -> None:
  """The flags that pick the measured step, shared with tools/profile_step.py; `mode` is the default mode."""
  flags.DEFINE_string('model', 'resnetrs50', 'A registered classifier (zoo.list_models()).')
  flags.DEFINE_integer('image_size', 0, 'Input side; 0: the family default for the model.')
  flags.DEFINE_integer('batch_size', 8, 'Global batch, split over the local devices.')
  flags.DEFINE_string('mode', mode, 'infer (eval forward) or train (the trainer\'s step).')
  flags.DEFINE_string('dtype', 'float32', 'Compute dtype of the model: float32 or bfloat16.')
  flags.DEFINE_string('parallelism', 'pmap', 'pmap or shard_map, as in training.')
  flags.DEFINE_string('model_kwargs', '{}', 'JSON overrides of the model\'s fields, e.g. {"scan_blocks": true}.')


def run() -> None:
  define_step_flags(mode='infer')
  flags.DEFINE_integer('steps', 10, 'Timed calls.')
  flags.DEFINE_integer('warmup', 2, 'Untimed calls after compiling.')
  flags.DEFINE_bool('all', False, 'Every registered classifier at its default resolution.')
  flags.DEFINE_string('dataset', 'image_folder', '--mode=input: the dataset whose training split is read.')
  flags.DEFINE_string('data_dir', None, '--mode=input: its data_dir (the image folder\'s ROOT).')
  flags.DEFINE_integer('synthetic', 0, '--mode=input: first write this many ~500x375 JPEGs into a new image folder '
                       '(--data_dir, or a temporary one).')
  flags.DEFINE_integer('workers', 0, '--mode=input: grain worker processes; 0: threads of this process.')
  flags.DEFINE_integer('threads', 0, '--mode=input: preparing threads (per process); 0: one per core.')
  flags.DEFINE_integer('repeats', 3, '--mode=input: timed rounds of --steps batches; the median is reported.')
  cli.run(main, __doc__)
