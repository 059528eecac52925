"""zoo: a JAX/Flax image-model zoo. `zoo.create_model(name)` builds any registered model."""
from zoo import models  # noqa: F401  (registers the families)
from zoo.registry import create_model, list_models, model_fields

__all__ = ['create_model', 'list_models', 'model_fields', 'convert']


def __getattr__(name):
  # `zoo.convert` pulls in file readers; import it on first use so `import zoo` stays light.
  if name == 'convert':
    import importlib
    return importlib.import_module('zoo.convert')
  raise AttributeError(name)
