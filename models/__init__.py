"""Model registry: ``--model_type`` names a module of this package and ``--model_name`` a builder in it."""
import importlib
import inspect

from models.multihead import MultiHeadNet
from models.svd_conv import SVD_Conv2d, svd_layers
from utils.errors import UserError

MODEL_TYPES = ("customnet", "customnet_SVD")


def model_builders(model_type: str) -> dict:
    """The public model builders of module ``models.<model_type>`` by name."""
    if model_type not in MODEL_TYPES:
        raise UserError(f"unknown --model_type {model_type!r}; valid: {', '.join(MODEL_TYPES)}")
    module = importlib.import_module(f"models.{model_type}")
    return {name: obj for name, obj in vars(module).items()
            if inspect.isfunction(obj) and obj.__module__ == module.__name__ and name[0].isupper()}


def build_model(model_type: str, model_name: str, **kwargs) -> MultiHeadNet:
    """``models.<model_type>.<model_name>(**kwargs)`` with a one-line error for unknown names."""
    builders = model_builders(model_type)
    if model_name not in builders:
        raise UserError(f"unknown --model_name {model_name!r} for --model_type {model_type}; "
                        f"valid: {', '.join(sorted(builders))}")
    return builders[model_name](**kwargs)


__all__ = ["MODEL_TYPES", "MultiHeadNet", "SVD_Conv2d", "build_model", "model_builders", "svd_layers"]
