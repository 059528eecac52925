"""Experiment configs: `--config=configs/<file>.py[:<arg>]`, each file's `get_config(arg)` returns a ConfigDict."""
