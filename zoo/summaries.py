"""TensorBoard events without TensorFlow: the trainer's scalars and hyperparameters, written with TensorBoard's own
event-file writer and summary protos (the `tensorboard` package needs numpy and protobuf only).

The files are `events.out.tfevents.*` in the workdir, as TensorBoard and its EventAccumulator read them. Scalars are
written as the scalar plugin's rank-0 tensors (what `tf.summary.scalar` writes in TF2); the hyperparameters as one
hparams-plugin session summary. The writer queues events and writes them from a thread; `flush` waits for them.

TensorBoard's writer reaches files through `tensorboard.compat.tf`: TensorFlow when it is installed, else its own
stub. Importing TensorFlow (and with it Keras and matplotlib) cost each training command about 3-4 s on this 2-core
CPU, for local files the stub writes alike; so a local logdir takes the stub (TensorBoard's own switch: a module
named `tensorboard.compat.notf`), and a bucket (gs://) keeps TensorFlow's file system.
"""
import os
import sys
import time
import types

from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.scalar import summary_v2 as scalar_summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class EventWriter:
  """Writes scalars and hyperparameters to `logdir`; with `active=False` (every process but the first of a
  multi-host run, whose metrics are the same global values) it writes nothing."""

  def __init__(self, logdir: str, active: bool = True):
    if '://' not in os.fspath(logdir):
      sys.modules.setdefault('tensorboard.compat.notf', types.ModuleType('tensorboard.compat.notf'))
    self._writer = EventFileWriter(logdir) if active else None

  def _write(self, step: int, summary) -> None:
    if self._writer is not None:
      self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

  def write_scalars(self, step: int, scalars: dict) -> None:
    for tag, value in scalars.items():
      self._write(step, scalar_summary.scalar_pb(tag, float(value)))

  def write_hparams(self, hparams: dict) -> None:
    """`hparams`: {name: bool, int, float or str}, e.g. the flattened config."""
    self._write(0, hparams_summary.hparams_pb(hparams))

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
