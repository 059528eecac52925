"""zoo: a JAX/Flax image-model zoo. `zoo.create_model(name)` builds any registered model."""
from zoo import models  # noqa: F401  (registers the families)
from zoo import convert
from zoo.registry import create_model, list_models, model_fields

__all__ = ['create_model', 'list_models', 'model_fields', 'convert']
