"""Two-stage training (the paper's recipe): the CNN on frames, then the LSTM on
frozen CNN features of consecutive frames. Patient-disjoint validation.

Each frame takes its clip's score (COVID-BLUeS scores clips, not frames). Stage
1 samples ``frames_per_clip`` random frames of every training clip per epoch;
stage 2 reads windows of consecutive frames. Both stages run for a wall-clock
budget (minutes) as well as an epoch cap, keep the checkpoint with the best
validation macro-F1, and can resume from their last checkpoint.

Stage 1 optimiser, by default the paper's: Adam (lr 0.002, eps 0.1) with
reduce-on-plateau (x0.5 after 5 epochs without a better validation macro-F1) and
early stopping after ``early_stop`` such epochs. ``optimizer="adamw"`` gives
AdamW with warm-up and a cosine decay over the budget instead (minutes or epochs,
whichever runs out first).

An optional stage 3 (``e2e_epochs > 0``) fine-tunes CNN and LSTM together, end to
end, on windows of consecutive frames (one augmentation draw per window).
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lusviewer.inference.sequence import DEFAULT_BURN_IN, DEFAULT_WINDOW, sequence_logits
from lusviewer.model.hybrid import HybridModel, ModelConfig, parameter_counts
from lusviewer.model.preprocess import to_model_input
from lusviewer.model.weights import ModelCard, save_model
from lusviewer.report.aggregate import persistent_risk, summarize_clip
from lusviewer.training.data import (
    LabelledClip,
    augment,
    cached_frames,
    dataset_fingerprint,
    evenly_spaced,
    load_dataset_with,
    split_by_group,
    split_warnings,
)
from lusviewer.training.metrics import classification_metrics, confusion, ordinal_aucs

COVID_BLUES_LICENCE = "CC BY-NC-ND 4.0"
COVID_BLUES_CITATION = (
    'Wiedemann N. et al., "COVID-BLUeS - A Prospective Study on the Value of AI in Lung '
    'Ultrasound Analysis", IEEE Journal of Biomedical and Health Informatics 29(9):6301-6310, '
    "2025, doi:10.1109/JBHI.2025.3543686"
)


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
    loss: str = "frame"  # stages 1 and 2: "frame" (each frame takes its clip's score) or "mil" (mil_ordinal_loss)
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
    command: str = field(default_factory=lambda: shlex.join(["lusviewer", *sys.argv[1:]]))


def model_config(cfg: TrainConfig, variant: str | None = None) -> ModelConfig:
    """The architecture a training config asks for (the paper's, at ``input_size``; or tiny)."""
    v = variant or cfg.variant
    return ModelConfig.tiny(v) if cfg.tiny else ModelConfig(variant=v, input_size=cfg.input_size)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _dist() -> tuple[int, int]:
    """(rank, world size) under torchrun / DistributedDataParallel, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> str:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): NCCL on CUDA
    (one GPU per process, ``cuda:LOCAL_RANK``), gloo on CPU. Returns the device to use."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def _all_agree(flag: bool) -> bool:
    """True only if every process says True (keeps the ranks' loops in step)."""
    import torch.distributed as dist

    if _dist()[1] == 1:
        return flag
    t = torch.tensor([1 if flag else 0])
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _from_rank0(values: list[float]) -> list[float]:
    """Rank 0's values on every process (the learning rate and stop flag it decided)."""
    import torch.distributed as dist

    if _dist()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.broadcast(t, src=0)
    return [float(v) for v in t.tolist()]


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _autocast(enabled: bool, device: torch.device | None = None) -> Any:
    kind = "cpu" if device is None else device.type
    dtype = torch.bfloat16 if kind == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(kind, dtype=dtype, enabled=enabled)


def _save_state(path: Path, module: nn.Module) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(tmp))
    os.replace(tmp, path)


def _load_state(path: Path, module: nn.Module) -> None:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)))


def _save_optim(path: Path, opt: torch.optim.Optimizer) -> None:
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors = {
        f"{pid}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).contiguous().cpu()
        for pid, st in sd["state"].items()
        for k, v in st.items()
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"param_groups": json.dumps(sd["param_groups"])})
    os.replace(tmp, path)


def _load_optim(path: Path, opt: torch.optim.Optimizer) -> None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        groups = json.loads((fh.metadata() or {})["param_groups"])
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key in fh.keys():  # noqa: SIM118  (safe_open is not iterable)
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = fh.get_tensor(key)
    opt.load_state_dict({"state": state, "param_groups": groups})


def _rng_path(work: Path, stage: str) -> Path:
    return work / f"{stage}_rng_rank{_dist()[0]}.json"


def schedule_fraction(elapsed_s: float, budget_s: float, progress_epochs: float, epochs: int) -> float:
    """Progress (0 to 1) through a cosine schedule: by epochs, unless the wall-clock
    budget will stop the run first (projected from the pace so far), then by the clock.
    So an epoch-bound run's learning rates never depend on timing, and stay exactly
    reproducible."""
    if progress_epochs <= 0:
        return 0.0
    by_epochs = progress_epochs / epochs
    if elapsed_s / progress_epochs * epochs > budget_s:  # the budget binds
        return min(1.0, max(elapsed_s / budget_s, by_epochs))
    return min(1.0, by_epochs)


def _save_rng(path: Path, rng: np.random.Generator, gen: torch.Generator, dev: torch.device, *, epoch: int) -> None:
    """Save the random streams a stage draws from (frame sampling, augmentation, dropout)
    beside its checkpoint, so that a resumed run draws what an uninterrupted one would
    have drawn. One file per rank: each rank augments with its own generator."""

    def enc(t: torch.Tensor) -> str:
        return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")

    state = {
        "epoch": epoch,  # the epoch the streams stand after: a resume checks it against the state file
        "numpy": rng.bit_generator.state,
        "generator": enc(gen.get_state()),
        "torch": enc(torch.get_rng_state()),
    }
    if dev.type == "cuda":
        state["cuda"] = enc(torch.cuda.get_rng_state(dev))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def _load_rng(path: Path, rng: np.random.Generator, gen: torch.Generator, dev: torch.device, *, epoch: int) -> bool:
    """Restore what :func:`_save_rng` saved after ``epoch``; False (streams left as
    seeded) where a checkpoint of an older lusviewer has none, or the run stopped
    between writing the streams and the state."""
    if not path.is_file():
        return False

    def dec(s: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)

    state = json.loads(path.read_text())
    if state.get("epoch") != epoch:
        return False
    rng.bit_generator.state = state["numpy"]
    gen.set_state(dec(state["generator"]))
    torch.set_rng_state(dec(state["torch"]))
    if dev.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(dec(state["cuda"]), dev)
    return True


class _Run:
    """Resumable progress of one training run, kept as JSON in the work dir."""

    def __init__(self, work: Path) -> None:
        self.path = work / "state.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def save(self) -> None:
        if _dist()[0] != 0:  # one writer under DDP
            return
        tmp = self.path.with_name("state.json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.path)


def _recon_term(cfg: TrainConfig, reconstruction: torch.Tensor | None, clean: torch.Tensor) -> torch.Tensor | float:
    """The autoencoder's share of the loss (0 for the DenseNet-only variant, which has none)."""
    if reconstruction is None:
        return 0.0
    return cfg.recon_weight * F.mse_loss(reconstruction.float(), clean)


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module, *, max_norm: float) -> None:
    """One optimiser step with the gradient norm clipped."""
    opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    nn.utils.clip_grad_norm_(module.parameters(), max_norm)
    opt.step()


LOSSES = ("frame", "mil")


def mil_ordinal_loss(
    logits: torch.Tensor, scores: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Multiple-instance ordinal loss for clips scored by their worst frame.

    ``logits`` (B, T, C) hold T frames of each of B clips (``mask`` (B, T) marks the real
    ones where clips are padded); ``scores`` (B,) are the clips' scores. A clip of score
    s says: no frame shows a pattern worse than s, and at least one frame shows s. With
    ``P_t(>=k)`` the softmax mass of frame t on scores k and above, the clip's ``P(>=k)``
    is its largest frame's, and the loss is the binary cross-entropy of those C-1
    clip-level probabilities against ``s >= k``, weighted per clip by ``weights[s]``. A
    score-0 clip thus teaches every frame to be 0 (its frames are labelled exactly); a
    score-s clip no longer teaches its normal-looking frames to be s, as the frame loss
    does.

    Computed in log space from the logits (no clamping, so a confidently wrong clip still
    has a gradient; and no ``binary_cross_entropy``, which CUDA autocast refuses):
    ``1 - max_t P_t(>=k) = min_t P_t(<k)``. Weighted like ``F.cross_entropy(weight=)``:
    sum of weighted losses over the sum of the weights.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    n_cls = logp.shape[-1]
    up = torch.stack([torch.logsumexp(logp[..., k:], -1) for k in range(1, n_cls)], -1)  # log P_t(>= k)
    down = torch.stack([torch.logsumexp(logp[..., :k], -1) for k in range(1, n_cls)], -1)  # log P_t(< k)
    if mask is not None:
        pad = ~mask[..., None]
        up = up.masked_fill(pad, float("-inf"))
        down = down.masked_fill(pad, float("inf"))
    log_yes, log_no = up.amax(dim=1), down.amin(dim=1)  # (B, C-1): log P(>= k), log P(< k) of the clip
    levels = torch.arange(1, n_cls, device=scores.device)
    target = (scores[:, None] >= levels[None, :]).float()
    bce = -(target * log_yes + (1 - target) * log_no).sum(-1)
    w = weights[scores]
    return (w * bce).sum() / w.sum()


def check_loss(cfg: TrainConfig, clips: Sequence[LabelledClip]) -> None:
    """Refuse ``--loss`` settings that cannot do what they say."""
    if cfg.loss not in LOSSES:
        raise ValueError(f"unknown loss {cfg.loss!r}; choose one of {', '.join(LOSSES)}")
    if cfg.loss != "mil":
        return
    if any(c.frame_scores is not None for c in clips):
        raise ValueError("--loss mil is for per-clip labels; this data has per-frame labels: use --loss frame")
    if cfg.e2e_epochs > 0 and cfg.variant == "cnn_lstm":
        raise ValueError("the end-to-end stage trains with the frame loss; it cannot follow --loss mil")


#: Options a work dir's run was made with that a resume must share (a state written
#: before an option existed used its default, given here).
RECIPE_KEYS = {
    "seed": None,
    "loss": "frame",
    "pretrain_epochs": 0,
    "init_densenet": None,
    "val_fraction": 0.2,
    "tiny": False,
    "variant": "cnn_lstm",
    "input_size": 128,
    "augment_padding": "zeros",
}


def check_recipe(cfg: TrainConfig, run: _Run, clips: Sequence[LabelledClip] | None = None) -> None:
    """A work dir resumes only the run it holds: the same recipe (:data:`RECIPE_KEYS`)
    and, with ``clips``, the same data (clips, scores, patients: :func:`dataset_fingerprint`),
    which is then recorded. Anything else would mix two runs, or call patients held out
    that the reused stages trained on."""
    old = run.data.get("config")
    if old:
        for key, default in RECIPE_KEYS.items():
            before = old.get(key, default)
            if key == "input_size" and cfg.tiny:
                continue  # the tiny architecture has its own size
            if before != getattr(cfg, key):
                raise SystemExit(f"{run.path.parent}: holds a run with {key} {before!r}; use a new work dir")
    if clips is None:
        return
    fingerprint = dataset_fingerprint(clips, cfg.data)
    before = run.data.get("data_fingerprint")
    if before is not None and before != fingerprint:
        raise SystemExit(
            f"{run.path.parent}: holds a run on other data (other clips, scores, patients or frame labels); "
            "use a new work dir"
        )
    run.data["data_fingerprint"] = fingerprint


def check_output_card(cfg: TrainConfig) -> None:
    """Never replace the shipped model by accident (a run from a checkout with
    ``--out models``); say so when another earlier card will be replaced."""
    from lusviewer.resources import DEFAULT_MODEL_CARD, resource_path

    target = (Path(cfg.out) / f"{cfg.name}.json").resolve()
    if target == resource_path("models", DEFAULT_MODEL_CARD).resolve():
        raise ValueError(
            f"--out {cfg.out} with --name {cfg.name} would replace the shipped model ({target}); "
            "choose another --out or --name"
        )
    if target.exists():
        _log(f"note: {target} exists and will be replaced when this run ends")


def labels_note(cfg: TrainConfig, clips: Sequence[LabelledClip]) -> str:
    """What the labels were and how training used them (for cards and reports)."""
    per_frame = sum(c.frame_scores is not None for c in clips)
    if per_frame:
        return (
            f"per-frame labels for {per_frame} of {len(clips)} clips; the other clips' frames take their clip's score"
        )
    if cfg.loss == "mil":
        return (
            "per-clip scores, trained as the score of each clip's worst frame (--loss mil: no frame above the "
            "clip's score, at least one at it); frame-level metrics compare every frame with its clip's score, "
            "which understates a model that rightly scores a clip's normal-looking frames lower"
        )
    return "per-clip scores; every frame takes its clip's score, so frame-level metrics measure agreement with it"


def _class_weights(scores: Sequence[int], n: int = 4) -> torch.Tensor:
    counts = np.bincount(np.asarray(scores), minlength=n).astype(np.float64)
    w = counts.sum() / np.maximum(counts, 1) / n
    return torch.tensor(w, dtype=torch.float32)


@torch.no_grad()
def _cnn_outputs(
    model: HybridModel, frames: np.ndarray, *, bf16: bool, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (T, C) and features (T, F) of the CNN for uint8 frames."""
    probs, feats = [], []
    dev = _device_of(model.cnn)
    for s in range(0, len(frames), batch):
        x = to_model_input(frames[s : s + batch], dev)
        with _autocast(bf16, dev):
            out = model.cnn(x)
        probs.append(torch.softmax(out.logits.float(), 1).cpu().numpy())
        feats.append(out.features.float().cpu().numpy())
    return np.concatenate(probs), np.concatenate(feats)


def _validate_cnn(
    model: HybridModel,
    val: Sequence[LabelledClip],
    frames: dict[str, np.ndarray],
    idx: dict[str, np.ndarray],
    bf16: bool,
) -> dict[str, float]:
    """Frame metrics on the frames ``idx`` of each validation clip, plus ``clip_macro_f1``:
    each clip scored by the worst of those frames (the rule ``--loss mil`` trains for)."""
    model.eval()
    ys, ps, losses, clip_true, clip_pred = [], [], [], [], []
    for c in val:
        probs, _ = _cnn_outputs(model, frames[c.path][idx[c.path]], bf16=bf16)
        t = np.array([c.target(int(i)) for i in idx[c.path]])
        ys.append(t)
        ps.append(probs.argmax(1))
        losses.append(-np.log(np.clip(probs[np.arange(len(t)), t], 1e-7, 1)).mean())
        clip_true.append(c.score)
        clip_pred.append(int(ps[-1].max()))
    m = classification_metrics(np.concatenate(ys), np.concatenate(ps))
    m["loss"] = float(np.mean(losses))
    m["clip_macro_f1"] = classification_metrics(np.array(clip_true), np.array(clip_pred))["macro_f1"]
    return m


def plateau_step(st: dict[str, Any], m: dict[str, float], cfg: TrainConfig, key: str = "macro_f1") -> bool:
    """Book-keeping after one validated epoch of stage 1; True when it is the best so far.

    Otherwise counts the epochs since the best and, with the paper's optimiser, halves
    the learning rate after every ``plateau_patience`` of them (Keras'
    ReduceLROnPlateau, factor 0.5, patience 5, monitoring validation macro-F1: of the
    frames, or with ``key="clip_macro_f1"`` of the clips scored by their worst frame).
    """
    if st["best"] is None or m[key] > st["best"].get(key, -1.0):
        st["best"] = {**m, "epoch": st["epoch"]}
        st["since_best"] = 0
        return True
    st["since_best"] += 1
    if cfg.optimizer == "adam" and st["since_best"] % cfg.plateau_patience == 0:
        st["lr"] = max(st["lr"] * cfg.plateau_factor, cfg.lr * 1e-3)
        _log(f"  no better validation for {st['since_best']} epochs: lr -> {st['lr']:.1e}")
    return False


def train_cnn(
    cfg: TrainConfig,
    model: HybridModel,
    train: Sequence[LabelledClip],
    val: Sequence[LabelledClip],
    frames: dict[str, np.ndarray],
    work: Path,
    run: _Run,
) -> dict[str, Any]:
    """Stage 1. Returns the best validation metrics; leaves the best weights in ``model``."""
    best_path, last_path, optim_path = (
        work / "cnn_best.safetensors",
        work / "cnn_last.safetensors",
        work / "cnn_optim.safetensors",
    )
    st = run.data.setdefault(
        "cnn", {"epoch": 0, "elapsed_s": 0.0, "best": None, "done": False, "lr": cfg.lr, "since_best": 0}
    )
    st.setdefault("lr", cfg.lr)
    st.setdefault("since_best", 0)
    if st["done"]:
        _log(f"stage 1 already done (best val macro-F1 {st['best']['macro_f1']:.3f}); loading it")
        _load_state(best_path, model.cnn)
        return dict(st["best"])
    cnn = model.cnn
    cnn.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt: torch.optim.Optimizer
    if cfg.optimizer == "adam":  # the paper's: Adam, eps 0.1, reduce-on-plateau
        opt = torch.optim.Adam(cnn.parameters(), lr=st["lr"], eps=cfg.adam_eps)
    elif cfg.optimizer == "adamw":  # AdamW, warm-up then cosine over the budget
        opt = torch.optim.AdamW(cnn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adam or adamw")
    if st["epoch"] > 0 and last_path.is_file():
        _load_state(last_path, cnn)
        _load_optim(optim_path, opt)
        _log(f"resuming stage 1 at epoch {st['epoch']} ({st['elapsed_s'] / 60:.1f} min done)")
    dev = _device_of(cnn)
    rank, world = _dist()
    net: nn.Module = cnn
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(cnn, device_ids=[dev.index] if dev.type == "cuda" else None)
        _log(f"rank {rank}: data-parallel over {world} processes")
    weights = _class_weights([c.score for c in train]).to(dev)
    mil = cfg.loss == "mil"
    # mil: whole clips per batch, frames_per_clip frames each (drawn again for a short clip)
    batch = max(1, cfg.batch_size // cfg.frames_per_clip) * cfg.frames_per_clip if mil else cfg.batch_size
    key = "clip_macro_f1" if mil else "macro_f1"
    rng = np.random.default_rng(cfg.seed + st["epoch"])  # same frame list on every rank
    gen = torch.Generator().manual_seed(cfg.seed + st["epoch"] + 7919 * rank)
    rng_path = _rng_path(work, "cnn")
    if st["epoch"] > 0 and not _load_rng(rng_path, rng, gen, dev, epoch=st["epoch"]):
        _log("  (a checkpoint without its random streams: the resumed epochs draw other frames)")
    val_idx = {c.path: evenly_spaced(len(frames[c.path]), cfg.val_frames_per_clip) for c in val}
    budget = cfg.cnn_minutes * 60
    t_start = time.time() - st["elapsed_s"]
    while _all_agree(
        st["epoch"] < cfg.cnn_epochs and time.time() - t_start < budget and st["since_best"] < cfg.early_stop
    ):
        cnn.train()
        if mil:
            order = rng.permutation(len(train))
            items = [
                (train[j].path, int(i), train[j].score)
                for j in order
                for i in np.sort(
                    rng.choice(
                        len(frames[train[j].path]),
                        cfg.frames_per_clip,
                        replace=len(frames[train[j].path]) < cfg.frames_per_clip,
                    )
                )
            ]
        else:
            items = [
                (c.path, int(i), c.target(int(i)))
                for c in train
                for i in rng.choice(len(frames[c.path]), min(cfg.frames_per_clip, len(frames[c.path])), replace=False)
            ]
            rng.shuffle(items)
        nb = len(items) // (batch * world)  # each rank takes every world-th batch
        t_epoch, tot, seen, lr = time.time(), 0.0, 0, st["lr"]
        bar = tqdm(
            total=nb,
            desc=f"CNN epoch {st['epoch'] + 1}",
            unit="batch",
            disable=rank != 0 or nb == 0,
            file=sys.stderr,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
        )
        for b in range(nb):
            if cfg.optimizer == "adamw":  # progress through whichever budget binds: minutes or epochs
                frac = schedule_fraction(time.time() - t_start, budget, st["epoch"] + b / nb, cfg.cnn_epochs)
                lr = cfg.lr * (min(1.0, frac / 0.03) if frac < 0.03 else 0.5 * (1 + math.cos(math.pi * frac)))
                lr = max(lr, cfg.lr * 0.01)
            else:
                lr = st["lr"]
            for g in opt.param_groups:
                g["lr"] = lr
            first = (b * world + rank) * batch
            chunk = items[first : first + batch]
            x = to_model_input(np.stack([frames[p][i] for p, i, _ in chunk]), dev)
            y = torch.tensor([s for _, _, s in chunk], device=dev)
            clean = augment(x, gen, padding=cfg.augment_padding).contiguous(memory_format=torch.channels_last)
            noisy = (clean + 0.03 * torch.randn(clean.shape, generator=gen).to(dev)).clamp(0, 1)
            with _autocast(cfg.bf16, dev):
                out = net(noisy)
                if mil:
                    per_clip = out.logits.view(-1, cfg.frames_per_clip, out.logits.shape[-1])
                    loss = mil_ordinal_loss(per_clip, y[:: cfg.frames_per_clip], weights)
                else:
                    loss = F.cross_entropy(out.logits.float(), y, weight=weights, label_smoothing=0.1)
                loss = loss + _recon_term(cfg, out.reconstruction, clean)
            _step(opt, loss, cnn, max_norm=5.0)
            tot += float(loss.detach()) * len(chunk)
            seen += len(chunk)
            bar.update(1)
            bar.set_postfix(
                loss=f"{tot / seen:.4f}",
                lr=f"{lr:.1e}",
                fps=f"{world * seen / max(time.time() - t_epoch, 1e-6):.1f}",
                refresh=False,
            )
        bar.close()
        st["epoch"] += 1
        st["elapsed_s"] = time.time() - t_start
        if rank == 0:  # rank 0 validates, decides the learning rate and keeps the checkpoints
            m = _validate_cnn(model, val, frames, val_idx, cfg.bf16)
            _log(
                f"epoch {st['epoch']}: train loss {tot / max(seen, 1):.4f}  val loss {m['loss']:.4f} "
                f"acc {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f} | clip (worst frame) macro-F1 "
                f"{m['clip_macro_f1']:.3f} lr {lr:.1e} ({st['elapsed_s'] / 60:.1f} min)"
            )
            if plateau_step(st, m, cfg, key=key):
                _save_state(best_path, cnn)
        st["lr"], st["since_best"] = _from_rank0([st["lr"], st["since_best"]])
        st["since_best"] = int(st["since_best"])
        _save_rng(rng_path, rng, gen, dev, epoch=st["epoch"])
        if rank != 0:
            continue
        if st["since_best"] >= cfg.early_stop:
            _log(f"  early stop: no better validation macro-F1 for {cfg.early_stop} epochs")
        _save_state(last_path, cnn)
        _save_optim(optim_path, opt)
        run.save()
    st["done"] = True
    run.save()
    if rank != 0:
        return {}
    _load_state(best_path, cnn)
    return dict(st["best"])


def train_lstm(
    cfg: TrainConfig,
    model: HybridModel,
    train: Sequence[LabelledClip],
    val: Sequence[LabelledClip],
    feats: dict[str, np.ndarray],
    work: Path,
    run: _Run,
) -> dict[str, Any]:
    """Stage 2 on frozen CNN features. Leaves the best head in ``model.sequence``.

    Frame loss: random windows of ``seq_len`` frames, best epoch by validation frame
    macro-F1. ``loss="mil"``: whole clips, :func:`mil_ordinal_loss`, best epoch by
    validation clip macro-F1 (persistent-worst rule)."""
    head = model.sequence
    assert head is not None
    best_path = work / "lstm_best.safetensors"
    st = run.data.setdefault("lstm", {"epoch": 0, "best": None, "done": False})
    if st["done"]:
        _load_state(best_path, head)
        return dict(st["best"])
    if st["epoch"] > 0:  # interrupted: the stage keeps no last checkpoint (it takes minutes), so start it again
        # (the head here is as initialised: run_training builds the model after seeding)
        _log(f"stage 2 was interrupted after epoch {st['epoch']}: starting it again")
        st.update(epoch=0, best=None)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lstm_lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=5)
    dev = _device_of(head)
    weights = _class_weights([c.score for c in train]).to(dev)
    mil = cfg.loss == "mil"  # whole clips as sequences (the worst frame may be anywhere in one)
    level = "clip" if mil else "frame"  # the validation macro-F1 that picks the best epoch
    t0 = time.time()
    patience, bad = 15, 0
    while st["epoch"] < cfg.lstm_epochs and time.time() - t0 < cfg.lstm_minutes * 60 and bad < patience:
        head.train()
        windows = []
        for c in train:
            f = feats[c.path]
            if mil:
                windows.append((f, np.full(len(f), c.score)))
                continue
            for _ in range(max(1, math.ceil(len(f) / cfg.seq_len)) * 2):
                s = int(rng.integers(0, max(1, len(f) - cfg.seq_len + 1)))
                n = len(f[s : s + cfg.seq_len])
                windows.append((f[s : s + cfg.seq_len], np.array([c.target(s + j) for j in range(n)])))
        rng.shuffle(windows)  # type: ignore[arg-type]
        for b in range(0, len(windows), cfg.lstm_batch_size):
            chunk = windows[b : b + cfg.lstm_batch_size]
            length = max(len(f) for f, _ in chunk) if mil else cfg.seq_len
            x = torch.zeros(len(chunk), length, model.cfg.feature_dim)
            mask = torch.zeros(len(chunk), length, dtype=torch.bool)
            for j, (f, _) in enumerate(chunk):
                x[j, : len(f)] = torch.from_numpy(f)
                mask[j, : len(f)] = True
            x, mask = x.to(dev), mask.to(dev)
            x = F.dropout(x, 0.2) + 0.05 * torch.randn_like(x) * x.std()
            y = torch.zeros(len(chunk), length, dtype=torch.long)
            for j, (_, t) in enumerate(chunk):
                y[j, : len(t)] = torch.from_numpy(t)
            y = y.to(dev)
            logits, _ = head(x)
            if mil:
                loss = mil_ordinal_loss(logits, y[:, 0], weights, mask)
            else:
                loss = F.cross_entropy(logits[mask], y[mask], weight=weights, label_smoothing=0.1)
            _step(opt, loss, head, max_norm=1.0)
        m = evaluate_sequence(head, val, feats)
        st["epoch"] += 1
        sched.step(m[level]["macro_f1"])
        _log(
            f"lstm epoch {st['epoch']}: val frame acc {m['frame']['accuracy']:.3f} F1 {m['frame']['macro_f1']:.3f}"
            f" | clip acc {m['clip']['accuracy']:.3f} F1 {m['clip']['macro_f1']:.3f}"
        )
        if st["best"] is None or m[level]["macro_f1"] > st["best"][level]["macro_f1"]:
            st["best"] = {**m, "epoch": st["epoch"]}
            _save_state(best_path, head)
            bad = 0
        else:
            bad += 1
        run.save()
    st["done"] = True
    run.save()
    _load_state(best_path, head)
    return dict(st["best"])


def cnn_features(
    model: HybridModel, clips: Sequence[LabelledClip], frames: dict[str, np.ndarray], bf16: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """CNN softmax probabilities and 64-d features of every frame of ``clips``."""
    model.eval()
    probs, feats = {}, {}
    for c in clips:
        probs[c.path], feats[c.path] = _cnn_outputs(model, frames[c.path], bf16=bf16)
    return probs, feats


def train_end_to_end(
    cfg: TrainConfig,
    model: HybridModel,
    train: Sequence[LabelledClip],
    val: Sequence[LabelledClip],
    frames: dict[str, np.ndarray],
    work: Path,
    run: _Run,
) -> dict[str, Any]:
    """Stage 3 (optional): CNN and LSTM fine-tuned together on windows of ``e2e_seq_len``
    consecutive frames, from the two-stage result. Keeps the epoch with the best
    validation frame macro-F1 (the two-stage model counts as epoch 0), so it can only
    keep or improve the validation score. Rank 0 only, like stage 2."""
    head = model.sequence
    assert head is not None
    best_path, last_path, optim_path = (
        work / "e2e_best.safetensors",
        work / "e2e_last.safetensors",
        work / "e2e_optim.safetensors",
    )
    st: dict[str, Any] = run.data.setdefault("e2e", {"epoch": 0, "elapsed_s": 0.0, "best": None, "done": False})
    if st["done"]:
        if best_path.is_file():
            _load_state(best_path, model)
        return dict(st["best"] or {})
    dev = _device_of(model)
    if st["best"] is None:
        _, feats = cnn_features(model, val, frames, cfg.bf16)
        start = {**evaluate_sequence(head, val, feats), "epoch": 0}
        st["best"] = start
        _save_state(best_path, model)  # the two-stage model stays unless an epoch beats it
        _log(f"end to end: starting from val frame macro-F1 {start['frame']['macro_f1']:.3f}")
    model.cnn.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.e2e_lr)
    if st["epoch"] > 0 and last_path.is_file() and optim_path.is_file():  # an interrupted run
        _load_state(last_path, model)
        _load_optim(optim_path, opt)
        _log(f"resuming the end-to-end stage at epoch {st['epoch']}")
    elif st["epoch"] > 0 and best_path.is_file():  # a run of an older lusviewer kept only its best epoch
        _load_state(best_path, model)
        _log(f"resuming the end-to-end stage at epoch {st['epoch']} from its best epoch (no last checkpoint)")
    weights = _class_weights([c.score for c in train]).to(dev)
    torch.manual_seed(cfg.seed + 104729)  # dropout: the same start whether stage 2 ran in this process or not
    rng = np.random.default_rng(cfg.seed + 104729 + st["epoch"])
    gen = torch.Generator().manual_seed(cfg.seed + 104729 + st["epoch"])
    rng_path = _rng_path(work, "e2e")
    if st["epoch"] > 0 and not _load_rng(rng_path, rng, gen, dev, epoch=st["epoch"]):
        _log("  (a checkpoint without its random streams: the resumed epochs draw other windows)")
    t_start = time.time() - st["elapsed_s"]
    n_seq = cfg.e2e_seq_len
    while st["epoch"] < cfg.e2e_epochs and time.time() - t_start < cfg.e2e_minutes * 60:
        model.train()
        starts = []
        for c in train:
            n = len(frames[c.path])
            if n >= n_seq:  # windows of whole length only (a clip shorter than a window is skipped)
                for _ in range(max(1, cfg.frames_per_clip // n_seq)):
                    starts.append((c, int(rng.integers(0, n - n_seq + 1))))
        rng.shuffle(starts)  # type: ignore[arg-type]
        bs = cfg.e2e_batch_size
        bar = tqdm(total=len(starts) // bs, desc=f"end-to-end epoch {st['epoch'] + 1}", unit="batch", file=sys.stderr)
        tot, seen = 0.0, 0
        for b in range(0, len(starts) - bs + 1, bs):
            chunk = starts[b : b + bs]
            x = to_model_input(np.concatenate([frames[c.path][s : s + n_seq] for c, s in chunk]), dev)
            y = torch.tensor(np.stack([[c.target(s + j) for j in range(n_seq)] for c, s in chunk]), device=dev)
            clean = augment(x, gen, group=n_seq, padding=cfg.augment_padding).contiguous(
                memory_format=torch.channels_last
            )
            with _autocast(cfg.bf16, dev):
                out = model.cnn(clean)
                logits, _ = head(out.features.float().view(bs, n_seq, -1))
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), weight=weights)
                loss = loss + _recon_term(cfg, out.reconstruction, clean)
            _step(opt, loss, model, max_norm=1.0)
            tot += float(loss.detach()) * bs
            seen += bs
            bar.update(1)
            bar.set_postfix(loss=f"{tot / seen:.4f}", refresh=False)
        bar.close()
        st["epoch"] += 1
        st["elapsed_s"] = time.time() - t_start
        _, feats = cnn_features(model, val, frames, cfg.bf16)
        m = evaluate_sequence(head, val, feats)
        _log(
            f"end-to-end epoch {st['epoch']}: train loss {tot / max(seen, 1):.4f}  val frame acc "
            f"{m['frame']['accuracy']:.3f} F1 {m['frame']['macro_f1']:.3f} | clip acc {m['clip']['accuracy']:.3f}"
        )
        if m["frame"]["macro_f1"] > st["best"]["frame"]["macro_f1"]:
            st["best"] = {**m, "epoch": st["epoch"]}
            _save_state(best_path, model)
        _save_state(last_path, model)
        _save_optim(optim_path, opt)
        _save_rng(rng_path, rng, gen, dev, epoch=st["epoch"])
        run.save()
    st["done"] = True
    run.save()
    if best_path.is_file():
        _load_state(best_path, model)
    return dict(st["best"])


def initial_densenet(
    cfg: TrainConfig,
    train: Sequence[LabelledClip],
    val: Sequence[LabelledClip],
    frames: dict[str, np.ndarray],
    work: Path,
    *,
    what: str,
    held_out: Sequence[LabelledClip] = (),
) -> str | None:
    """The weights file the DenseNet branch starts from: ``--init-densenet``, checked
    not to have been pretrained on ``val`` or ``held_out`` patients, or with
    ``--pretrain-epochs`` a pretraining on ``train`` into ``work``; None: from scratch."""
    from lusviewer.training.pretrain import check_held_out, pretrain_for

    check_init_options(cfg)
    path = str(pretrain_for(cfg, train, val, frames, work)) if cfg.pretrain_epochs > 0 else cfg.init_densenet
    if path:
        check_held_out(path, cfg.data, {c.group for c in [*val, *held_out]}, what)
    return path


def check_init_options(cfg: TrainConfig) -> None:
    """Refuse, before any decoding, initialisation options that cannot work together."""
    if cfg.pretrain_epochs > 0 and cfg.init_densenet:
        raise ValueError("--pretrain-epochs and --init-densenet both set the DenseNet branch: choose one")
    if cfg.pretrain_epochs > 0 and _dist()[1] > 1:
        raise ValueError(
            "--pretrain-epochs under torchrun: pretrain first with `lusviewer pretrain` (same --seed and "
            "--val-fraction), then pass its output as --init-densenet"
        )


def pretraining_record(path: str) -> dict[str, Any] | None:
    """What a model card keeps of a ``lusviewer pretrain`` initialisation: recipe, data
    (patient ids, not labels), epochs, loss history and linear probe; None for other weights."""
    from lusviewer.training.pretrain import FORMAT

    try:
        card = json.loads(Path(path).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        return None
    keep = ("method", "sha256", "data", "epochs", "minutes", "history", "probe", "machine", "created")
    return {k: card[k] for k in keep if k in card}


def _clip_eval(
    val: Sequence[LabelledClip],
    probs_of: Callable[[LabelledClip], np.ndarray],
    fps: float = 25.0,
    *,
    per_clip: bool = False,
) -> dict[str, Any]:
    """Frame and clip metrics, confusion matrices and clip AUCs of ``val``; with
    ``per_clip`` also every clip's score, prediction and risk (for out-of-fold analyses:
    patient level, pooled AUCs). Training states and model cards store the rest but never
    these per-clip rows (they name the clip files)."""
    ys, ps, cy, cp_persist, cp_major, risks = [], [], [], [], [], []
    for c in val:
        p = probs_of(c)
        pred = p.argmax(1)
        ys.append(c.targets(len(pred)))
        ps.append(pred)
        cy.append(c.score)
        cp_persist.append(summarize_clip(pred, p, fps=fps).clip_score)
        cp_major.append(summarize_clip(pred, p, fps=fps, rule="majority").clip_score)
        risks.append(persistent_risk(p, fps))
    y, p_all = np.concatenate(ys), np.concatenate(ps)
    res: dict[str, Any] = {
        "frame": classification_metrics(y, p_all),
        "clip": classification_metrics(cy, cp_persist),
        "clip_majority_rule": classification_metrics(cy, cp_major),
        "confusion": {"frame": confusion(y, p_all).tolist(), "clip": confusion(cy, cp_persist).tolist()},
        # None where undefined (a score missing from ``val``): JSON has no NaN.
        "auc": {k: (v if np.isfinite(v) else None) for k, v in ordinal_aucs(cy, np.stack(risks)).items()},
    }
    if per_clip:
        res["clips"] = [
            {
                "clip": c.path,
                "group": c.group,
                "score": c.score,
                "pred": int(q),
                "risk": [round(float(v), 5) for v in r],
            }
            for c, q, r in zip(val, cp_persist, risks, strict=True)
        ]
    return res


@torch.no_grad()
def evaluate_sequence(
    head: nn.Module, val: Sequence[LabelledClip], feats: dict[str, np.ndarray], *, per_clip: bool = False
) -> dict[str, Any]:
    head.eval()

    def probs(c: LabelledClip) -> np.ndarray:
        f = torch.from_numpy(feats[c.path]).to(_device_of(head))
        logits = sequence_logits(head, f)  # type: ignore[arg-type]
        return torch.softmax(logits.float(), 1).cpu().numpy()

    return _clip_eval(val, probs, per_clip=per_clip)


def baselines(
    train: Sequence[LabelledClip], val: Sequence[LabelledClip], frames: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Majority-class (of the training clips) and chance references on the validation set."""
    major = int(np.bincount([c.score for c in train], minlength=4).argmax())
    ys = np.concatenate([c.targets(len(frames[c.path])) for c in val])
    return {
        "majority_class": major,
        "majority_frame": classification_metrics(ys, np.full_like(ys, major)),
        "majority_clip": classification_metrics([c.score for c in val], [major] * len(val)),
        "chance_accuracy": 0.25,
    }


def _machine(device: torch.device) -> str:
    """Where a run trained, for the model card."""
    gpu = f"{torch.cuda.get_device_name(device)}, " if device.type == "cuda" else ""
    return f"{gpu}{os.cpu_count()} CPU cores, torch {torch.__version__}"


def _group_key(group: str) -> tuple[int, int, str]:
    """Numeric patient ids in numeric order, others after them alphabetically."""
    return (0, int(group), "") if group.isdigit() else (1, 0, group)


def _data_provenance(cfg: TrainConfig) -> dict[str, str]:
    """What the card says about the data: COVID-BLUeS is recognised; for other data the
    user's --data-name / --data-licence / --citation, or a plain 'not stated'."""
    is_blues = (Path(cfg.data) / "severity.csv").is_file() and cfg.layout in ("auto", "covid-blues")
    name = cfg.data_name or (
        "COVID-BLUeS development subset (Maastricht UMC+), Philips Lumify convex probe" if is_blues else cfg.data
    )
    licence = cfg.data_licence or (COVID_BLUES_LICENCE if is_blues else "not stated (pass --data-licence)")
    citation = cfg.citation or (COVID_BLUES_CITATION if is_blues else "not stated (pass --citation)")
    return {
        "data": name,
        "data_licence": licence,
        "citation": citation,
        "model_licence": (
            f"weights trained on {licence} data: the data licence's terms apply to the weights"
            if cfg.data_licence or is_blues
            else "the training data's licence was not stated; its terms apply to the weights"
        ),
    }


def run_training(cfg: TrainConfig) -> Path:
    """Both stages end to end; writes ``<out>/<name>.safetensors`` + ``.json``.

    Under ``torchrun --nproc_per_node N`` stage 1 runs data-parallel on N processes
    (DistributedDataParallel: NCCL on GPUs, gloo on CPUs); rank 0 validates, keeps the
    checkpoints, then runs stage 2 and writes the card alone.
    """
    device = init_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    run = _Run(work)
    check_init_options(cfg)
    check_output_card(cfg)
    clips = load_dataset_with(cfg)
    check_recipe(cfg, run, clips)
    check_loss(cfg, clips)
    run.data["config"] = asdict(cfg)
    run.save()
    train, val = split_by_group(clips, val_fraction=cfg.val_fraction, seed=cfg.seed)
    for note in split_warnings(train, val):
        _log(f"warning: {note}")
    _log(
        f"{len(clips)} clips: train {len(train)} clips / {len({c.group for c in train})} patients, "
        f"val {len(val)} clips / {len({c.group for c in val})} patients"
    )
    mcfg = model_config(cfg)
    model = HybridModel(mcfg)
    t0 = time.time()
    frames = {c.path: cached_frames(c.path, mcfg.input_size, cfg.cache_dir) for c in clips}
    _log(f"decoded {sum(len(v) for v in frames.values())} frames in {time.time() - t0:.0f} s")
    initialisation = "from scratch (no ImageNet weights)"
    init = initial_densenet(cfg, train, val, frames, work / "pretrain", what="this training run")
    if init:
        from lusviewer.model.pretrained import init_densenet_from
        from lusviewer.model.weights import sha256_file

        n = init_densenet_from(model, init)
        how = ", pretrained here on the training patients' frames (SimSiam)" if cfg.pretrain_epochs > 0 else ""
        initialisation = (
            f"DenseNet-201 branch from {Path(init).name}{how} "
            f"(sha256 {sha256_file(init)}, {n} tensors); the rest from scratch"
        )
        _log(f"initialised the DenseNet branch from {init} ({n} tensors)")
        torch.manual_seed(cfg.seed)  # the same stage 1 whether pretraining ran now or is reused
    from lusviewer.inference.engine import resolve_device

    model.to(resolve_device(device))

    cnn_best = train_cnn(cfg, model, train, val, frames, work, run)
    if _dist()[1] > 1:
        import torch.distributed as dist

        rank = dist.get_rank()
        dist.barrier()
        dist.destroy_process_group()
        if rank != 0:  # stage 2 and the card are rank 0's (the LSTM trains in minutes)
            return Path(cfg.out) / f"{cfg.name}.json"
    model.eval()
    metrics: dict[str, Any] = {"baselines": baselines(train, val, frames), "cnn_selection": cnn_best}

    needed = clips if model.sequence is not None else val  # without stage 2, only the validation needs them
    _log(
        "CNN on every frame of every clip (features for stage 2, full validation)"
        if model.sequence is not None
        else "CNN on every frame of every validation clip"
    )
    t0 = time.time()
    probs, feats = cnn_features(model, needed, frames, cfg.bf16)
    _log(f"  {sum(len(v) for v in feats.values())} frames in {time.time() - t0:.0f} s")
    metrics["cnn"] = _clip_eval(val, lambda c: probs[c.path])
    if model.sequence is not None:
        train_lstm(cfg, model, train, val, feats, work, run)
        metrics["cnn_lstm"] = evaluate_sequence(model.sequence, val, feats)
        if cfg.e2e_epochs > 0:
            e2e = train_end_to_end(cfg, model, train, val, frames, work, run)
            if e2e.get("epoch", 0) > 0:  # the fine-tuned CNN replaces the two-stage one
                metrics["two_stage"] = {"cnn": metrics["cnn"], "cnn_lstm": metrics["cnn_lstm"]}
                val_probs, val_feats = cnn_features(model, val, frames, cfg.bf16)
                metrics["cnn"] = _clip_eval(val, lambda c: val_probs[c.path])
                metrics["cnn_lstm"] = evaluate_sequence(model.sequence, val, val_feats)
    final = metrics["cnn_lstm" if model.sequence is not None else "cnn"]
    _log(
        f"validation ({len(val)} clips): frame acc {final['frame']['accuracy']:.3f} "
        f"macro-F1 {final['frame']['macro_f1']:.3f}; clip acc {final['clip']['accuracy']:.3f} "
        f"macro-F1 {final['clip']['macro_f1']:.3f}"
    )

    card = ModelCard(
        name=cfg.name,
        version=cfg.version,
        config=mcfg,
        weights_file="",
        preprocessing={
            "resize": "cv2.resize to size x size, INTER_AREA (aspect not kept)",
            "scale": "uint8 / 255 -> [0, 1]",
            "colour": "RGB; grayscale clips as three equal channels",
        },
        inference={
            "lstm_window": DEFAULT_WINDOW,
            "lstm_burn_in": DEFAULT_BURN_IN,
            "clip_rule": "persistent",
        },
        training={
            **_data_provenance(cfg),
            "labels": labels_note(cfg, clips),
            "split": {
                "kind": "patient-disjoint, stratified by each patient's worst score",
                "seed": cfg.seed,
                "train_patients": sorted({c.group for c in train}, key=_group_key),
                "val_patients": sorted({c.group for c in val}, key=_group_key),
                "train_clips": len(train),
                "val_clips": len(val),
            },
            "command": cfg.command,
            "settings": {k: v for k, v in asdict(cfg).items() if k not in ("command",)},
            "initialisation": initialisation,
            **({"pretraining": pretraining_record(init)} if init and pretraining_record(init) else {}),
            "epochs": {
                "cnn": run.data["cnn"]["epoch"],
                "lstm": run.data.get("lstm", {}).get("epoch", 0),
                "end_to_end": run.data.get("e2e", {}).get("epoch", 0),
            },
            "machine": _machine(_device_of(model)),
        },
        metrics={
            "note": (
                "Validation patients were also used to pick the best epoch (early stopping), so these "
                "numbers are mildly optimistic; the cross-validated numbers come with the training toolkit."
            ),
            **metrics,
        },
        parameters=parameter_counts(model),
    )
    out = save_model(model, card, Path(cfg.out) / f"{cfg.name}.json")
    _log(f"wrote {out} and {out.with_suffix('.safetensors')}")
    return out
