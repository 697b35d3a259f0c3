"""The hybrid CNN-LSTM model, its preprocessing, and weights with model cards (no Qt)."""

from lusviewer.model.hybrid import (
    CLASS_NAMES,
    VARIANTS,
    HybridCNN,
    HybridModel,
    ModelConfig,
    SequenceHead,
    parameter_counts,
)
from lusviewer.model.weights import LoadedModel, ModelCard, ModelError, load_model, save_model, sha256_file

__all__ = [
    "CLASS_NAMES",
    "VARIANTS",
    "HybridCNN",
    "HybridModel",
    "LoadedModel",
    "ModelCard",
    "ModelConfig",
    "ModelError",
    "SequenceHead",
    "load_model",
    "parameter_counts",
    "save_model",
    "sha256_file",
]
