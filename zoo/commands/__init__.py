"""The zoo's commands: zoo-train, zoo-eval, zoo-benchmark and zoo-export (pyproject.toml's console scripts; the root
train.py, eval.py, benchmark.py and export.py run the same). Each module has `main(argv)` and its entry `run()`."""
