"""zoo: a JAX/Flax image-model zoo. `zoo.create_model(name)` builds any registered model, `zoo.model_card(name)` states
its facts, `zoo.load_pretrained(name)` builds it with its published weights."""
from zoo import models  # noqa: F401  (registers the families)
from zoo import convert
from zoo.pretrained import load_pretrained
from zoo.registry import ModelCard, create_model, list_models, model_card, model_fields

__all__ = ['create_model', 'list_models', 'model_fields', 'model_card', 'ModelCard', 'convert', 'load_pretrained']
