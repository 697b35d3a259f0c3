"""Weights as safetensors beside a JSON model card; the card's sha256 is checked on load.

Nothing is ever unpickled: safetensors holds plain tensors, the card plain JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lusviewer.model.hybrid import CLASS_NAMES, HybridModel, ModelConfig


class ModelError(Exception):
    """The model could not be loaded. ``str()`` names the file and the reason."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ModelCard:
    """The JSON card: what the weights are, how they were made, how good they are."""

    name: str
    version: str
    config: ModelConfig
    weights_file: str
    sha256: str = ""
    weights_dtype: str = "float16"
    classes: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    preprocessing: dict[str, Any] = field(default_factory=dict)
    inference: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, int] = field(default_factory=dict)
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.config.to_dict(),
            "classes": self.classes,
            "input": {
                "size": self.config.input_size,
                "channels": "RGB",
                **self.preprocessing,
            },
            "inference": self.inference,
            "weights_file": self.weights_file,
            "weights_dtype": self.weights_dtype,
            "sha256": self.sha256,
            "parameters": self.parameters,
            "training": self.training,
            "metrics": self.metrics,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        inp = dict(d.get("input", {}))
        inp.pop("size", None)
        inp.pop("channels", None)
        return cls(
            name=d["name"],
            version=str(d.get("version", "")),
            config=ModelConfig.from_dict(d["architecture"]),
            weights_file=d["weights_file"],
            sha256=d.get("sha256", ""),
            weights_dtype=d.get("weights_dtype", "float32"),
            classes=list(d.get("classes", CLASS_NAMES)),
            preprocessing=inp,
            inference=dict(d.get("inference", {})),
            training=dict(d.get("training", {})),
            metrics=dict(d.get("metrics", {})),
            parameters=dict(d.get("parameters", {})),
            notes=d.get("notes", ""),
        )

    @property
    def display_name(self) -> str:
        return f"{self.name} {self.version}".strip()


@dataclass
class LoadedModel:
    model: HybridModel
    card: ModelCard
    card_path: Path
    weights_path: Path


def save_model(
    model: HybridModel,
    card: ModelCard,
    card_path: str | os.PathLike[str],
    *,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write ``<stem>.safetensors`` and the card (with the file's sha256) atomically."""
    from safetensors.torch import save_file

    card_path = Path(card_path)
    card_path.parent.mkdir(parents=True, exist_ok=True)
    weights_path = card_path.with_suffix(".safetensors")
    state = {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    tmp = weights_path.with_name(weights_path.name + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "card": card_path.name})
    os.chmod(tmp, 0o644)  # safetensors creates it owner-only; the weights are meant to be shared
    os.replace(tmp, weights_path)
    card.weights_file = weights_path.name
    card.weights_dtype = str(dtype).removeprefix("torch.")
    card.sha256 = sha256_file(weights_path)
    tmp_card = card_path.with_name(card_path.name + ".tmp")
    tmp_card.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    os.replace(tmp_card, card_path)
    return card_path


def read_card(path: str | os.PathLike[str]) -> tuple[ModelCard, Path]:
    """Read a card given the card or its weights file; returns the card and its path."""
    p = Path(path)
    card_path = p.with_suffix(".json") if p.suffix == ".safetensors" else p
    if p.is_dir():
        cards = sorted(p.glob("*.json"))
        if len(cards) != 1:
            raise ModelError(f"{p}: expected one model card (.json) in the folder, found {len(cards)}")
        card_path = cards[0]
    if not card_path.is_file():
        raise ModelError(f"{card_path}: model card not found (a .json beside the .safetensors)")
    try:
        data = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{card_path}: not a valid model card ({exc})") from None
    if isinstance(data, dict) and str(data.get("format", "")).startswith("lusviewer-pretrained-densenet"):
        raise ModelError(
            f"{card_path}: a pretrained DenseNet-201 branch (lusviewer pretrain), not a scoring model: "
            "pass its .safetensors to train or crossval with --init-densenet"
        )
    try:
        card = ModelCard.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{card_path}: not a valid model card ({exc})") from None
    return card, card_path


def record_in_card(card_path: str | os.PathLike[str], section: str, values: dict[str, Any]) -> None:
    """Add measured facts about a model (e.g. ``inference.bf16_label_agreement``) to its card.

    The card's sha256 covers the weights, not the card, so the weights stay verified;
    the file is replaced atomically."""
    path = Path(card_path)
    card = json.loads(path.read_text())
    card.setdefault(section, {}).update(values)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, path)


def load_model(path: str | os.PathLike[str], *, verify: bool = True) -> LoadedModel:
    """Build the model from its card and load its weights, checking the sha256 first."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    card, card_path = read_card(path)
    weights_path = card_path.parent / card.weights_file
    if not weights_path.is_file():
        raise ModelError(f"{weights_path}: weights file not found (named by {card_path.name})")
    if verify:
        digest = sha256_file(weights_path)
        if digest != card.sha256:
            raise ModelError(
                f"{weights_path}: sha256 {digest[:12]}... does not match the model card "
                f"({card.sha256[:12] or 'none'}...); the file is corrupt or not the one the card describes"
            )
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{weights_path}: not a valid safetensors file ({exc})") from None
    model = HybridModel(card.config)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{weights_path}: weights do not fit the card's architecture ({exc})") from None
    model.eval()
    return LoadedModel(model, card, card_path, weights_path)
