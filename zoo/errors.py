"""Errors in what the user asked for (model, config, data), reported as one line before anything compiles."""


class UserError(ValueError):
  """Bad input: the message alone tells the user what to change."""
