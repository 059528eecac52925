"""Errors in what the user asked for (model, config, data), reported as one line before anything compiles."""


class UserError(ValueError):
  """Bad input: the message alone tells the user what to change."""


class Preempted(SystemExit):
  """Training stopped on the scheduler's SIGTERM after checkpointing: the process exits 0 unless a caller catches
  it, and the same command continues the run."""


class DatasetError(UserError):
  """A dataset that cannot be read as configured; the message says how to fix it."""
