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
from lusviewer.model.weights import (
    LoadedModel,
    ModelCard,
    ModelError,
    check_card,
    load_model,
    record_in_card,
    save_model,
    settings_sha256,
    sha256_file,
)

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
    "check_card",
    "load_model",
    "parameter_counts",
    "record_in_card",
    "save_model",
    "settings_sha256",
    "sha256_file",
]
