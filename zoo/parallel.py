"""Runs one per-device step function (collectives over `axis_name='batch'`) data-parallel.

Two equivalent back-ends: `jax.pmap` (the default; state carries a leading device axis) and `jax.jit` of
`jax.shard_map` over a one-axis Mesh (state replicated as global arrays). The step function is the same for both.
"""
import collections

import flax.jax_utils
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from zoo.errors import UserError

AXIS = 'batch'
MODES = ('pmap', 'shard_map')


class DataParallel:
  """Places state and batches on the local devices and compiles per-device functions for one back-end.

  `donate`: whether compiled steps update their state in place (donate its buffers: the state passed in is deleted).
  None picks by backend: on accelerators, where memory is scarce, not on CPU. There XLA keeps every read of an old
  parameter ahead of the in-place write by copying it first, and the optimiser / EMA updates run as several fusions
  that each recompute the new value: RS-50@160's training step ran 26% faster without donation on 2 CPU cores
  (12.4 against 9.8 img/s, benchmark.py); the price is a second copy of the state in host memory. Either way a step
  computes the same bits (tested on CPU)."""

  def __init__(self, mode: str = 'pmap', donate: bool | None = None):
    if mode not in MODES:
      raise UserError(f'parallelism must be one of {MODES}, got {mode!r}')
    self.mode = mode
    self.local_devices = jax.local_devices()
    self.donate = self.local_devices[0].platform != 'cpu' if donate is None else donate
    self.mesh = Mesh(np.asarray(jax.devices()), (AXIS,))
    # pmap takes its inputs split along a leading axis of the local devices.
    self._local_sharding = NamedSharding(Mesh(np.asarray(self.local_devices), (AXIS,)), P(AXIS))

  @property
  def num_devices(self) -> int:
    return jax.device_count()

  def compile(self, fn, num_sharded: int, num_replicated: int = 0, donate_state: bool = True,
              sharded_output: bool = False):
    """fn(state, *sharded_batches, *replicated_args) -> (state-like, metrics) or metrics, per device; with
    `sharded_output`, fn returns its share of a batch-sized output (benchmark.py's logits) instead.

    The state is donated when this DataParallel donates (see the class) and `donate_state` is set: unset it for a
    state that outlives the call (the eval step's variables)."""
    donate = (0,) if donate_state and self.donate else ()
    if self.mode == 'pmap':
      in_axes = (0,) + (0,) * num_sharded + (None,) * num_replicated
      return jax.pmap(fn, axis_name=AXIS, in_axes=in_axes, donate_argnums=donate)
    in_specs = (P(),) + (P(AXIS),) * num_sharded + (P(),) * num_replicated
    # Outputs are replicated by construction (averaged gradients, cross-replica BN, gathered metrics), which the
    # replication checker cannot infer through every collective.
    mapped = jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=P(AXIS) if sharded_output else P(),
                           check_vma=False)
    return jax.jit(mapped, donate_argnums=donate)

  def put_state(self, state):
    """Copies a host (unreplicated) state onto every device."""
    if self.mode == 'pmap':
      # One copy per device along a leading axis, sharded as the step's own outputs are (a mesh axis named AXIS):
      # the state a step returns then takes the same compiled step as the state put here. (flax.jax_utils.replicate
      # names its mesh axis otherwise, and the training step compiled a second time at its second call.)
      n = len(self.local_devices)
      return jax.tree.map(lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n, *np.shape(x))),
                                                   self._local_sharding), state)
    return jax.device_put(state, NamedSharding(self.mesh, P()))

  def state_shapes(self, state):
    """The shapes, dtypes and shardings that `put_state` gives `state` (whose leaves may be jax.ShapeDtypeStruct):
    what lowering a step needs, without the state itself."""
    if self.mode == 'pmap':
      return jax.tree.map(lambda x: jax.ShapeDtypeStruct((len(self.local_devices), *x.shape), x.dtype,
                                                         sharding=self._local_sharding), state)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(self.mesh, P())), state)

  def get_state(self, state):
    """The state as host numpy arrays, one copy."""
    if self.mode == 'pmap':
      state = flax.jax_utils.unreplicate(state)
    return jax.device_get(state)

  def get_metrics(self, metrics):
    """Per-step metrics gathered across devices, one copy (still on device)."""
    return flax.jax_utils.unreplicate(metrics) if self.mode == 'pmap' else metrics

  def put_batch(self, batch: dict):
    """Splits a host-local batch over the local devices."""
    if self.mode == 'pmap':
      n = len(self.local_devices)
      return jax.tree.map(lambda x: jax.device_put(x.reshape((n, -1) + x.shape[1:]), self._local_sharding), batch)
    sharding = NamedSharding(self.mesh, P(AXIS))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)

  def prefetch(self, batches, size: int = 2):
    """Keeps `size` batches in flight to the devices while the current step runs."""
    queue = collections.deque()
    for batch in batches:
      queue.append(self.put_batch(batch))
      if len(queue) > size:
        yield queue.popleft()
    while queue:
      yield queue.popleft()


def check_batch_size(global_batch: int) -> int:
  """The per-host batch; fails with one line when the global batch does not split over the devices."""
  devices, hosts = jax.device_count(), jax.process_count()
  if global_batch <= 0 or global_batch % devices:
    raise UserError(f'batch_size={global_batch} is not divisible by the number of devices ({devices})')
  return global_batch // hosts


