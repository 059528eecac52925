"""Import of pretrained weights: `from_timm(name, load_weights(file), **overrides) -> variables`, and the way
back, `to_timm(name, variables)` (export.py); the plug-and-play paper's released denoisers:
`pnp_denoisers.load(file) -> (model, variables, description)`.

CLI: `python -m zoo.convert --model resnetrs50 --weights FILE --out DIR` writes a checkpoint that eval.py reads.
A family becomes convertible by registering where timm keeps its variables (`register_timm`, see timm_resnet_rs.py);
its models whose card (`zoo.model_card`) names a timm model convert.
"""
from zoo.convert import pnp_denoisers
from zoo.convert import timm_resnet_rs  # noqa: F401  (registers the ResNet-RS mapping)
from zoo.convert import timm_volo  # noqa: F401  (registers the VOLO mapping)
from zoo.convert.readers import load_weights
from zoo.convert.timm import (TIMM_FAMILIES, ConversionError, TimmFamily, convertible, from_timm, register_timm,
                              to_timm)

__all__ = ['from_timm', 'to_timm', 'convertible', 'load_weights', 'register_timm', 'TimmFamily', 'TIMM_FAMILIES',
           'ConversionError', 'pnp_denoisers']
