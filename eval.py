"""`python eval.py ...` runs zoo-eval from a clone (zoo/commands/evaluate.py)."""
from zoo.commands.evaluate import run

if __name__ == '__main__':
  run()
