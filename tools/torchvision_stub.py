"""Lets timm import without torchvision (whose wheels do not load beside the local torch build).

timm touches torchvision only for data transforms and a frozen BatchNorm; building a model and reading its weights
need neither. Every `torchvision.*` import resolves to a module whose attributes are inert placeholder classes.
Used only by fixture scripts, never by the zoo.
"""
import importlib.abc
import importlib.machinery
import sys
import types


class _Placeholder(type):
  def __getattr__(cls, name):
    return _Placeholder(name, (), {})


def _module_getattr(name):
  if name.startswith('__'):
    raise AttributeError(name)
  return _Placeholder(name, (), {})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  def find_spec(self, fullname, path, target=None):
    if fullname == 'torchvision' or fullname.startswith('torchvision.'):
      return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
    return None

  def create_module(self, spec):
    module = types.ModuleType(spec.name)
    module.__path__ = []
    module.__getattr__ = _module_getattr
    return module

  def exec_module(self, module):
    pass


def install():
  if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
