"""What a long run on shared machines must survive, on the host side of the training loop: the SIGTERM a scheduler
sends before it preempts the job, steps whose loss or gradients are not finite, and a batch too large for the
device. (The step itself rejects a non-finite update, zoo/trainer.py; unreadable checkpoints are skipped in
zoo/checkpoint.py.)"""
import collections
import contextlib
import signal
import threading

import jax
from absl import logging
from jax.experimental import multihost_utils

from zoo.errors import UserError


class PreemptionNotice:
  """Tells the loop at which step to stop for a preemption, so that it can finish the step, write a checkpoint,
  wait for it and exit 0 instead of dying mid-save.

  One process: while entered, SIGTERM only sets `received` (the signal's name), and `reached(step)` is True after
  it. Signal handlers exist only in the main thread; elsewhere (a training thread of a notebook) SIGTERM keeps its
  default. Several processes must stop at the same step, or the others would wait in the next collective for ever:
  there jax's preemption sync service (started by jax.distributed.initialize) hears the SIGTERM, on whichever host
  it arrives, and names one step for all of them; `reached(step)` asks it, and must be called at every step by
  every process. A handler of ours would hide the signal from it, so none is installed."""

  def __init__(self, signals=(signal.SIGTERM,)):
    self.signals = signals
    self.received: str | None = None
    self._previous = {}
    self._shared = jax.process_count() > 1

  def __enter__(self):
    if not self._shared and threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._note) for s in self.signals}
    return self

  def reached(self, step: int) -> bool:
    """True when the run must stop after `step`."""
    if self._shared and multihost_utils.reached_preemption_sync_point(step):
      self.received = 'SIGTERM (on one of the hosts)'
    return self.received is not None

  def _note(self, signum, frame):
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}


class NonFiniteSteps:
  """Counts the steps that the train step rejected (loss or gradient norm not finite, state left as it was) and
  says when `limit` of them came in a row: a run that keeps producing NaN is diverging, not unlucky.

  A step's verdict is a device value: reading it waits for the step. With `late`, `add` reads each verdict one step
  late, when the next step is already queued behind it, so that the device does not wait for the host; a streak is
  then seen one step later, and the last step's verdict only by `finish`."""

  def __init__(self, limit: int, late: bool = False):
    self.limit = limit
    self.late = late
    self.total = 0
    self.streak: list[int] = []
    self._unread = collections.deque()  # (step, verdict)

  def add(self, step: int, finite) -> bool:
    """Takes `step`'s verdict (a boolean device array) and reads those due; True when the run must stop."""
    self._unread.append((step, finite))
    return self._read(keep=1 if self.late else 0)

  def finish(self) -> bool:
    """Reads the verdicts not yet read (the last step's, when late); True when the run must stop."""
    return self._read(keep=0)

  def _read(self, keep: int) -> bool:
    while len(self._unread) > keep:
      if self.record(*self._unread.popleft()):
        return True
    return False

  def record(self, step: int, finite) -> bool:
    """Notes whether `step` was applied; True when the run must stop."""
    if bool(finite):
      self.streak = []
      return False
    self.total += 1
    self.streak.append(step)
    logging.warning('step %d rejected: loss or gradients not finite, parameters unchanged (%d in a row, %d in this '
                    'run)', step, len(self.streak), self.total)
    return len(self.streak) >= self.limit

  def message(self, saved_step: int, workdir: str) -> str:
    return (f'training stopped: {len(self.streak)} steps in a row (steps {self.streak[0]}-{self.streak[-1]}) had a '
            f'non-finite loss or gradients, so none of them changed the parameters. The last good state is '
            f'checkpoint {saved_step} in {workdir}. Lower config.learning_rate or raise its warm-up, check the input '
            f'data, or train in float32; config.max_nonfinite_steps sets how many in a row are tolerated')


class OutOfMemory(UserError):
  """A device allocation failed; the message names the model, the batch and what to change, and keeps XLA's own
  first line."""


@contextlib.contextmanager
def out_of_memory_explained(model: str, batch_size: int, model_kwargs: dict, image_size: int | None = None):
  """Turns a failed device allocation inside the block (compiling, running or reading back a step) into
  OutOfMemory; other errors pass unchanged. XLA reports it as RESOURCE_EXHAUSTED (GPU, TPU) or, when XLA:CPU's
  dispatch cannot allocate, as INTERNAL "... Out of memory allocating N bytes". Suggests only what applies:
  bfloat16 when the model computes in float32, rematerialisation when the model has a `remat` switch that is off."""
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    if 'RESOURCE_EXHAUSTED' not in str(e) and 'out of memory' not in str(e).lower():
      raise
    devices = jax.device_count()
    size = f', {image_size}x{image_size} images' if image_size else ''
    hints = ['a smaller batch_size']
    if model_kwargs.get('dtype') == 'float32':
      hints.append('bfloat16 compute (model_kwargs.dtype=bfloat16)')
    if model_kwargs.get('remat') is False:
      hints.append("recomputing each block's activations in the backward pass (model_kwargs.remat=True)")
    xla = str(e).splitlines()[0].rstrip('.')
    raise OutOfMemory(f'out of memory on the {jax.devices()[0].platform} devices: {model} at batch_size={batch_size} '
                      f'({batch_size // devices} per device{size}) does not fit (XLA: {xla}). Try {", or ".join(hints)}'
                      ) from e
