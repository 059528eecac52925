"""`python benchmark.py ...` runs zoo-benchmark from a clone (zoo/commands/benchmark.py)."""
from zoo.commands.benchmark import run

if __name__ == '__main__':
  run()
