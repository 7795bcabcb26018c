"""Architectures by name (``mlp``, ``cnn1d``, ``cnn2d``, ``resnet``); any ``nn.Module`` works too."""
from expunge.models.registry import (
    MODELS,
    ModelSpec,
    build_model,
    model_names,
    register_model,
)

__all__ = ["MODELS", "ModelSpec", "build_model", "model_names", "register_model"]
