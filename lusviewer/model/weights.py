"""Weights as safetensors beside a JSON model card; the card's sha256 is checked on load.

Nothing is ever unpickled: safetensors holds plain tensors, the card plain JSON.

The card's sha256 protects the weights; the weights protect the card's *settings*:
what inference reads from the card (architecture, classes, input and preprocessing,
and the ``inference`` section: LSTM window and burn-in, the familiarity limit, the
bf16 agreement that picks the precision, the calibration temperature, anything added
there later; ``input.crop``, whole frame or ultrasound sector) is written, as
canonical JSON with its sha256, into the safetensors metadata when the model is saved
(:data:`SETTINGS_KEY`) and compared on load: a card whose settings were edited by hand
(``recon_error_limit: 1e9`` would silently switch off the familiarity warning) is a
:class:`ModelError` naming the changed fields. Free-text notes beside the settings
(``inference.*_check``) and the card's other sections (training, metrics, notes) are
not bound. :func:`record_in_card` is the sanctioned way to change a setting after
training: it re-binds (rewrites the metadata, and the card's sha256). Settings no
inference could run with (``lstm_burn_in >= lstm_window``; a familiarity limit of 1
or more, which no clip can reach; a temperature that is not a finite number above 0; a
crop other than "none" or "sector"; ``inference.findings_shown`` naming a finding the
model has no auxiliary head for; an ``inference.clip_rule`` that is not the ``expected``
rule with three increasing thresholds inside 0..3) are a :class:`ModelError` at load, bound or not.
Weights saved before the binding existed load with a one-line warning
(:attr:`LoadedModel.warnings`, and the ``lusviewer.model.weights`` logger).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lusviewer.model.hybrid import CLASS_NAMES, HybridModel, ModelConfig

log = logging.getLogger(__name__)

#: safetensors metadata: the card's inference settings as canonical JSON, and its sha256.
SETTINGS_KEY = "lusviewer.card_settings"
SETTINGS_SHA_KEY = "lusviewer.card_settings_sha256"


#: ``input.crop`` of a card: ``"none"`` (or absent), the whole frame resized; ``"sector"``,
#: the clip's ultrasound sector only (:class:`lusviewer.model.preprocess.Sector`).
CROPS = ("none", "sector")


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
    def crop(self) -> str:
        """``input.crop``: what of each frame the model sees, one of :data:`CROPS` (absent: "none")."""
        return str(self.preprocessing.get("crop", "none"))

    @property
    def temperature(self) -> float:
        """``inference.temperature``: the logits are divided by it before the softmax (absent: 1)."""
        return float(self.inference.get("temperature", 1.0))

    @property
    def clip_rule(self) -> tuple[str, tuple[float, ...] | None] | None:
        """``inference.clip_rule``: the clip rule the model was trained for, by name (older
        cards: ``"persistent"``), or the one its cross-validation chose with its thresholds
        (``{"rule": "expected", "thresholds": [t1, t2, t3]}``); None where the card names none."""
        rule = self.inference.get("clip_rule")
        if isinstance(rule, str):
            return rule, None
        if not isinstance(rule, dict):
            return None
        return str(rule["rule"]), tuple(float(x) for x in rule["thresholds"])

    @property
    def display_name(self) -> str:
        return f"{self.name} {self.version}".strip()


@dataclass
class LoadedModel:
    model: HybridModel
    card: ModelCard
    card_path: Path
    weights_path: Path
    #: One line each, for people (the CLI prints them, the viewer shows them).
    warnings: list[str] = field(default_factory=list)


def _is_note(key: str) -> bool:
    """Free text beside a setting (``recon_error_check``): not read by inference, not bound."""
    return key.endswith(("_check", "_note")) or key in ("note", "notes")


def card_settings(card: ModelCard) -> dict[str, Any]:
    """What inference reads from the card: bound to the weights at save time."""
    d = card.to_dict()
    return {
        "architecture": d["architecture"],
        "classes": d["classes"],
        "input": d["input"],
        "inference": {k: v for k, v in d["inference"].items() if not _is_note(k)},
    }


def _canonical(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _sha(settings: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(settings).encode()).hexdigest()


def settings_sha256(card: ModelCard) -> str:
    """sha256 of the canonical JSON of :func:`card_settings`."""
    return _sha(card_settings(card))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _changed_fields(bound: dict[str, Any], now: dict[str, Any]) -> list[str]:
    a, b = _flatten(bound), _flatten(now)
    changed = {k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING)}
    # an empty section that gained a key: name the key, not the section
    return sorted(k for k in changed if not any(o.startswith(k + ".") for o in changed))


_MISSING = object()


def _number(value: Any) -> float | None:
    """A JSON number (not a bool), else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_card(card: ModelCard, where: str | os.PathLike[str] = "model card") -> None:
    """Refuse settings no inference can run with; :class:`ModelError` names the field."""

    def bad(name: str, value: Any, why: str) -> ModelError:
        return ModelError(f"{where}: {name} = {value!r} is impossible: {why}")

    cfg = card.config
    if cfg.input_size < 16:
        raise bad("architecture.input_size", cfg.input_size, "frames are resized to at least 16 px")
    if cfg.num_classes != len(CLASS_NAMES):
        raise bad("architecture.num_classes", cfg.num_classes, "scores are on the 0-3 scale (4 classes)")
    if len(card.classes) != cfg.num_classes:
        raise bad("classes", card.classes, f"the architecture has {cfg.num_classes} classes")
    inf = card.inference
    window = inf.get("lstm_window")
    if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 1):
        raise bad("inference.lstm_window", window, "a whole number of frames, at least 1")
    burn_in = inf.get("lstm_burn_in")
    if burn_in is not None and (not isinstance(burn_in, int) or isinstance(burn_in, bool) or burn_in < 0):
        raise bad("inference.lstm_burn_in", burn_in, "a whole number of frames, 0 or more")
    if cfg.variant == "cnn_lstm" and isinstance(burn_in, int) and isinstance(window, int) and burn_in >= window:
        raise bad("inference.lstm_burn_in", burn_in, f"it must be below inference.lstm_window ({window})")
    if "recon_error_limit" in inf and inf["recon_error_limit"] is not None:
        limit = _number(inf["recon_error_limit"])
        if limit is None or not math.isfinite(limit) or not 0 <= limit < 1:
            raise bad(
                "inference.recon_error_limit",
                inf["recon_error_limit"],
                "the reconstruction error is a mean absolute difference of [0, 1] images, so the limit is a "
                "number from 0 (every clip flagged) to below 1 (at 1 or above, no clip could ever be flagged)",
            )
    if "temperature" in inf:
        temperature = _number(inf["temperature"])
        if temperature is None or not math.isfinite(temperature) or temperature <= 0:
            raise bad(
                "inference.temperature",
                inf["temperature"],
                "a calibration temperature divides the logits, so it is a finite number above 0 (1: none)",
            )
    if "findings_shown" in inf and inf["findings_shown"] is not None:
        shown, heads = inf["findings_shown"], tuple(cfg.aux_heads)
        if (
            not isinstance(shown, list)
            or any(name not in heads for name in shown)
            or len(set(map(str, shown))) != len(shown)
        ):
            raise bad(
                "inference.findings_shown",
                shown,
                f"a list of distinct findings the model has heads for (architecture.aux_heads: {list(heads)})",
            )
    if "clip_rule" in inf and inf["clip_rule"] is not None and inf["clip_rule"] not in CLIP_RULES:
        rule = inf["clip_rule"]
        t = rule.get("thresholds") if isinstance(rule, dict) else None
        values = [_number(x) for x in t] if isinstance(t, list) else []
        n = len(card.classes)
        if (
            not isinstance(rule, dict)
            or rule.get("rule") != "expected"
            or len(values) != n - 1
            or any(v is None or not math.isfinite(v) for v in values)
            or any(b <= a for a, b in itertools.pairwise(values))  # type: ignore[operator]
            or not 0 < values[0] <= values[-1] < n - 1  # type: ignore[operator]
        ):
            raise bad(
                "inference.clip_rule",
                rule,
                f"one of {', '.join(map(repr, CLIP_RULES))}, or "
                f'{{"rule": "expected", "thresholds": [{n - 1} strictly increasing numbers between 0 and {n - 1}]}}',
            )
    crop = card.preprocessing.get("crop", "none")
    if crop not in CROPS:
        raise bad("input.crop", crop, f"frames are cropped as one of {', '.join(map(repr, CROPS))}")
    if "bf16_label_agreement" in inf and inf["bf16_label_agreement"] is not None:
        agreement = _number(inf["bf16_label_agreement"])
        if agreement is None or not 0 <= agreement <= 1:
            raise bad("inference.bf16_label_agreement", inf["bf16_label_agreement"], "a fraction between 0 and 1")


#: Clip rules a card may name (as ``report.aggregate.RULES``; model does not import report).
CLIP_RULES = ("persistent", "majority", "max", "expected")


def _metadata(card: ModelCard, card_path: Path) -> dict[str, str]:
    return {
        "format": "pt",
        "card": card_path.name,
        SETTINGS_KEY: _canonical(card_settings(card)),
        SETTINGS_SHA_KEY: settings_sha256(card),
    }


def _write_weights(state: dict[str, torch.Tensor], weights_path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tmp = weights_path.with_name(weights_path.name + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    os.chmod(tmp, 0o644)  # safetensors creates it owner-only; the weights are meant to be shared
    os.replace(tmp, weights_path)


def _write_card(card_path: Path, data: dict[str, Any]) -> None:
    tmp_card = card_path.with_name(card_path.name + ".tmp")
    tmp_card.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp_card, card_path)


def save_model(
    model: HybridModel,
    card: ModelCard,
    card_path: str | os.PathLike[str],
    *,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write ``<stem>.safetensors`` (with the card's inference settings bound in its
    metadata) and the card (with the file's sha256) atomically. An impossible setting
    is a :class:`ModelError` before anything is written."""
    card_path = Path(card_path)
    check_card(card, card_path)
    card_path.parent.mkdir(parents=True, exist_ok=True)
    weights_path = card_path.with_suffix(".safetensors")
    state = {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    _write_weights(state, weights_path, _metadata(card, card_path))
    card.weights_file = weights_path.name
    card.weights_dtype = str(dtype).removeprefix("torch.")
    card.sha256 = sha256_file(weights_path)
    _write_card(card_path, card.to_dict())
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

    Facts outside the bound settings (training, metrics, free-text ``*_check`` notes)
    only change the card. A bound setting (``inference.recon_error_limit``...) of weights
    that carry the binding re-binds: the weights are rewritten with the new settings in
    their metadata (same tensors) and the card's sha256 follows. Files replaced atomically."""
    path = Path(card_path)
    data = json.loads(path.read_text())
    data.setdefault(section, {}).update(values)
    card = ModelCard.from_dict(data)
    check_card(card, path)
    weights_path = path.parent / card.weights_file
    if weights_path.is_file():
        meta = _read_metadata(weights_path)
        if SETTINGS_SHA_KEY in meta and meta[SETTINGS_SHA_KEY] != settings_sha256(card):
            if sha256_file(weights_path) != data.get("sha256"):
                raise ModelError(f"{weights_path}: sha256 does not match the model card; not re-binding it")
            from safetensors.torch import load_file

            _write_weights(load_file(str(weights_path)), weights_path, {**meta, **_metadata(card, path)})
            data["sha256"] = sha256_file(weights_path)
    _write_card(path, data)


def _read_metadata(weights_path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{weights_path}: not a valid safetensors file ({exc})") from None


#: Weights saved before the binding existed, by their sha256, with the sha256 of the
#: settings their card was shipped with: the shipped model (sha256 43fb175b...) is bound
#: here, in the code, instead of rewriting 108 MB of weights to carry the metadata. A
#: model saved by this version carries its binding in its own metadata instead.
BOUND_IN_CODE: dict[str, str] = {
    "43fb175bc7fcc71a663367bdcd38493faf636bf84f528d42b5e8ac04609ee616": (
        "8fb12f264beaf20945b90a2b5ce1ae599d49f3bef40d26deec6103c86b00c307"
    ),
}


def check_binding(
    card: ModelCard, card_path: Path, weights_path: Path, metadata: dict[str, str], weights_sha256: str | None = None
) -> str | None:
    """Compare the card's settings with those bound in the weights' metadata: raises
    :class:`ModelError` naming the changed fields; returns a one-line warning for weights
    saved before the binding existed (and not listed in :data:`BOUND_IN_CODE` under their
    verified ``weights_sha256``), else None."""
    bound_sha = metadata.get(SETTINGS_SHA_KEY)
    if bound_sha is None and weights_sha256 in BOUND_IN_CODE:
        if settings_sha256(card) == BOUND_IN_CODE[weights_sha256]:
            return None
        raise ModelError(
            f"{card_path}: the card's inference settings are not those these weights were shipped with "
            "(recorded in lusviewer for weights saved before the binding); restore the card"
        )
    if bound_sha is None:
        return (
            f"{card_path}: the card's inference settings are not bound to its weights (saved before lusviewer "
            "bound them): an edited setting would go unnoticed"
        )
    now = card_settings(card)
    if _sha(now) == bound_sha:
        return None
    try:
        bound = json.loads(metadata.get(SETTINGS_KEY, ""))
    except ValueError:
        bound = None
    if not isinstance(bound, dict) or _sha(bound) != bound_sha:
        changed = "the bound copy in the weights is damaged"
    else:
        fields = _changed_fields(bound, now)
        shown = ", ".join(fields[:6]) + (f" and {len(fields) - 6} more" if len(fields) > 6 else "")
        changed = f"changed: {shown}"
    raise ModelError(
        f"{card_path}: the card's inference settings are not those the weights were saved with ({changed}); "
        "restore the card, or record a new setting with lusviewer.model.weights.record_in_card"
    )


def load_model(path: str | os.PathLike[str], *, verify: bool = True) -> LoadedModel:
    """Build the model from its card and load its weights, checking first the card's
    settings, the weights' sha256 and (``verify``) that the settings are the ones bound
    to the weights."""
    from safetensors import SafetensorError, safe_open

    card, card_path = read_card(path)
    check_card(card, card_path)
    weights_path = card_path.parent / card.weights_file
    if not weights_path.is_file():
        raise ModelError(f"{weights_path}: weights file not found (named by {card_path.name})")
    digest: str | None = None
    if verify:
        digest = sha256_file(weights_path)
        if digest != card.sha256:
            raise ModelError(
                f"{weights_path}: sha256 {digest[:12]}... does not match the model card "
                f"({card.sha256[:12] or 'none'}...); the file is corrupt or not the one the card describes"
            )
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{weights_path}: not a valid safetensors file ({exc})") from None
    warnings: list[str] = []
    if verify:
        warning = check_binding(card, card_path, weights_path, metadata, digest)
        if warning:
            log.warning("%s", warning)
            warnings.append(warning)
    model = HybridModel(card.config)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{weights_path}: weights do not fit the card's architecture ({exc})") from None
    model.eval()
    return LoadedModel(model, card, card_path, weights_path, warnings)
