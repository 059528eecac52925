"""`python train.py ...` runs zoo-train from a clone (zoo/commands/train.py)."""
from zoo.commands.train import run

if __name__ == '__main__':
  run()
