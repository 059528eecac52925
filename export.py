"""`python export.py ...` runs zoo-export from a clone (zoo/commands/export.py)."""
from zoo.commands.export import run

if __name__ == '__main__':
  run()
