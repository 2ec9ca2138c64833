"""Model registry: ``--model_type`` names a module of this package and ``--model_name`` a builder in it."""
import importlib

from typing import Mapping, Optional

import torch

from models.multihead import MultiHeadNet
from models.svd_conv import SVD_Conv2d, state_ranks, svd_layers
from utils.errors import UserError

MODEL_TYPES = ("customnet", "customnet_SVD", "vgg_16_bn")
FEATURE_SIZE_MODULES = {"customnet": "customnet", "customnet_SVD": "customnet", "vgg_16_bn": "vgg_16_bn"}
DENSE_FORMS = {"Net_SVD": ("customnet", "Net"), "vgg16_bn_cifar100_SVD": ("vgg_16_bn", "vgg16_bn_cifar100")}
"""``(model_type, model_name)`` of the dense network with the same layers as each factorized one."""


def check_dense_model(model_type: str, model_name: str, method: str) -> None:
    """A one-line error naming the flags of the dense networks (``DENSE_FORMS``' values) unless
    ``models.<model_type>.<model_name>`` is one of them (for a method that runs on dense layers only)."""
    if (model_type, model_name) not in DENSE_FORMS.values():
        choices = " or ".join(f"--model_type {dense_type} --model_name {dense_name}"
                              for dense_type, dense_name in DENSE_FORMS.values())
        raise UserError(f"{method} runs on a dense network, not --model_type {model_type} --model_name "
                        f"{model_name}: use {choices}")


def model_builders(model_type: str) -> dict:
    """The public model builders of module ``models.<model_type>`` by name."""
    if model_type not in MODEL_TYPES:
        raise UserError(f"unknown --model_type {model_type!r}; valid: {', '.join(MODEL_TYPES)}")
    module = importlib.import_module(f"models.{model_type}")
    return {name: getattr(module, name) for name in module.BUILDERS}


def build_model(model_type: str, model_name: str, image_size: int = 32, **kwargs) -> MultiHeadNet:
    """``models.<model_type>.<model_name>(size=..., **kwargs)`` for square inputs of ``image_size`` pixels, with a
    one-line error for unknown names. ``size`` is the number of positions of the last feature map."""
    builders = model_builders(model_type)
    if model_name not in builders:
        raise UserError(f"unknown --model_name {model_name!r} for --model_type {model_type}; "
                        f"valid: {', '.join(sorted(builders))}")
    return builders[model_name](size=feature_positions(model_type, image_size), **kwargs)


def feature_positions(model_type: str, image_size: int) -> int:
    """Positions of the last feature map of ``models.<model_type>``'s networks for square inputs of ``image_size``
    pixels; an input too small to leave one is a one-line error."""
    positions = importlib.import_module(f"models.{FEATURE_SIZE_MODULES[model_type]}").feature_size(image_size)
    if positions < 1:
        raise UserError(f"--image_size {image_size} is too small for --model_type {model_type}: its layers leave no "
                        f"feature of {image_size}×{image_size} images (the published sizes are 32 and 84)")
    return positions


def build_model_for(model_type: str, model_name: str, image_size: int,
                    state: Optional[Mapping[str, torch.Tensor]] = None, source: str = "") -> MultiHeadNet:
    """``build_model``, with each SVD layer of the rank it has in ``state`` (a state dict read from ``source``) when
    given; a ``state`` of another number of SVD layers is a one-line error naming the flags."""
    model = build_model(model_type, model_name, image_size=image_size)
    if state is None:
        return model
    ranks, layers = state_ranks(state), len(svd_layers(model))
    if len(ranks) != layers:
        raise UserError(f"{source} holds {len(ranks)} SVD layers, --model_type {model_type} --model_name "
                        f"{model_name} has {layers}: it is another architecture; give the flags it was trained with")
    return build_model(model_type, model_name, image_size=image_size, rank=ranks) if ranks else model


__all__ = ["DENSE_FORMS", "MODEL_TYPES", "MultiHeadNet", "SVD_Conv2d", "build_model", "build_model_for",
           "check_dense_model", "feature_positions", "model_builders", "svd_layers"]
