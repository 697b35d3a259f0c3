"""Settings of a training run (``lusviewer train`` / ``crossval``) and of a pretraining
(``lusviewer pretrain``), and the architecture a training run asks for."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field

from lusviewer.inference.sequence import DEFAULT_WINDOW
from lusviewer.model.hybrid import ModelConfig

#: The stage-1 and stage-2 losses: "frame" (each frame takes its clip's score, cross-entropy
#: with label smoothing), "mil" (multiple-instance ordinal), "sord" (each frame takes its
#: clip's score as SORD soft labels) or "coral" (a CORAL ordinal head, binary losses on
#: score >= k; stage 2 then uses "frame").
LOSSES = ("frame", "mil", "sord", "coral")
#: What the model sees of a frame: "none" (the whole frame, resized) or "sector" (the
#: ultrasound sector only: :class:`lusviewer.model.preprocess.Sector`).
CROPS = ("none", "sector")


def _command() -> str:
    return shlex.join(["lusviewer", *sys.argv[1:]])


@dataclass
class TrainConfig:
    data: str
    out: str
    work_dir: str = "runs/train"
    cache_dir: str | None = None
    variant: str = "cnn_lstm"
    tiny: bool = False
    seed: int = 0
    val_fraction: float = 0.2
    frames_per_clip: int = 16
    val_frames_per_clip: int = 12
    loss: str = "frame"  # one of LOSSES
    crop: str = "none"  # one of CROPS
    aux_weight: float = 0.0  # > 0: auxiliary A-line / B-line heads, their loss weighted so
    sord_alpha: float = 1.0  # SORD: soft label of score k for a clip of score y ~ exp(-alpha (k - y)^2)
    width: float = 1.0  # multiplies the channels of the classification paths (hybrid) or blocks (compact)
    batch_size: int = 32
    input_size: int = 128
    optimizer: str = "adam"
    lr: float = 2e-3
    adam_eps: float = 0.1
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    early_stop: int = 12
    weight_decay: float = 1e-4
    augment_padding: str = "zeros"  # margins uncovered by the augmentation: zeros, reflection or border
    recon_weight: float = 0.5
    cnn_epochs: int = 70
    cnn_minutes: float = 60.0
    lstm_epochs: int = 120
    lstm_minutes: float = 10.0
    lstm_batch_size: int = 25
    lstm_lr: float = 1e-3
    seq_len: int = DEFAULT_WINDOW
    e2e_epochs: int = 0
    e2e_minutes: float = 30.0
    e2e_lr: float = 1e-4
    e2e_seq_len: int = 16
    e2e_batch_size: int = 4
    bf16: bool = True
    threads: int = 0
    device: str = "auto"
    init_densenet: str | None = None
    pretrain_epochs: int = 0  # > 0: pretrain the DenseNet branch (SimSiam) on the training patients first
    pretrain_minutes: float = 60.0
    layout: str = "auto"
    labels: str | None = None
    group_by: str | None = None
    group_column: str | None = None
    frame_labels: str | None = None
    data_name: str | None = None
    data_licence: str | None = None
    citation: str | None = None
    name: str = "lusviewer-hybrid"
    version: str = "1"
    command: str = field(default_factory=_command)


@dataclass
class PretrainConfig:
    data: str
    out: str  # the .safetensors to write (the card goes beside it as .json)
    work_dir: str = "runs/pretrain"
    cache_dir: str | None = None
    extra: list[str] = field(default_factory=list)  # folders of unlabelled clips
    tiny: bool = False
    seed: int = 0
    val_fraction: float = 0.2
    input_size: int = 128
    frames_per_clip: int = 16  # sampled per clip per epoch
    batch_size: int = 64
    epochs: int = 100
    minutes: float = 60.0
    lr: float = 0.05  # SimSiam: SGD, lr 0.05 x batch / 256, momentum 0.9, cosine decay
    weight_decay: float = 1e-4
    proj_dim: int = 512
    pred_dim: int = 128
    probe: bool = True
    val_frames_per_clip: int = 12
    bf16: bool = True
    threads: int = 0
    device: str = "auto"
    layout: str = "auto"
    labels: str | None = None
    group_by: str | None = None
    group_column: str | None = None
    frame_labels: str | None = None
    command: str = field(default_factory=_command)


def model_config(cfg: TrainConfig, variant: str | None = None) -> ModelConfig:
    """The architecture a training config asks for (the paper's, at ``input_size``; or tiny)."""
    from dataclasses import replace

    from lusviewer.model.hybrid import AUX_FINDINGS

    v = variant or cfg.variant
    base = ModelConfig.tiny(v) if cfg.tiny else ModelConfig(variant=v, input_size=cfg.input_size)
    return replace(
        base,
        head="coral" if cfg.loss == "coral" else "softmax",
        aux_heads=AUX_FINDINGS if cfg.aux_weight > 0 else (),
        width=base.width if cfg.tiny else cfg.width,
    )
