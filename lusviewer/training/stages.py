"""The stages of a training run (the paper's recipe, two stages, and an optional third).

Stage 1 trains the CNN on frames (``frames_per_clip`` random frames of every
training clip per epoch), stage 2 the LSTM on frozen CNN features of consecutive
frames, stage 3 (``e2e_epochs > 0``) both together, end to end, on windows of
consecutive frames (one augmentation draw per window). Stages 1 and 3 run on
:class:`~lusviewer.training.loop.StageLoop` (a wall-clock budget and an epoch cap,
resumable from their last checkpoint); each keeps the epoch with the best validation.

Stage 1 optimiser, by default the paper's: Adam (lr 0.002, eps 0.1) with
reduce-on-plateau (x0.5 after 5 epochs without a better validation macro-F1) and
early stopping after ``early_stop`` such epochs. ``optimizer="adamw"`` gives AdamW
with warm-up and a cosine decay over the budget instead (minutes or epochs, whichever
runs out first).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lusviewer.model.hybrid import HybridModel
from lusviewer.model.preprocess import to_model_input
from lusviewer.training.config import TrainConfig
from lusviewer.training.data import LabelledClip, augment, evenly_spaced
from lusviewer.training.loop import (
    RunState,
    StageFiles,
    StageLoop,
    autocast,
    batches_per_epoch,
    class_weights,
    device_of,
    dist_info,
    from_rank0,
    load_state,
    log,
    optimizer_step,
    save_state,
    schedule_fraction,
    thread_tuner,
)
from lusviewer.training.losses import aux_loss, coral_loss, mil_ordinal_loss, recon_term, sord_loss
from lusviewer.training.stopping import BUDGET, budget_warning, stop_reason
from lusviewer.training.validation import cnn_features, evaluate_sequence, validate_cnn
from lusviewer.wording import count


@dataclass(frozen=True)
class StageRun:
    """What the stages of one training run work on: its settings, the model, the
    training and validation clips, their decoded frames, the work dir and its state."""

    cfg: TrainConfig
    model: HybridModel
    train: Sequence[LabelledClip]
    val: Sequence[LabelledClip]
    frames: dict[str, np.ndarray]
    work: Path
    run: RunState


# (clip path, frame index, target) of one training frame
Item = tuple[str, int, int]


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
        log(f"  no better validation for {st['since_best']} epochs: lr -> {st['lr']:.1e}")
    return False


def _cnn_optimizer(cfg: TrainConfig, cnn: nn.Module, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":  # the paper's: Adam, eps 0.1, reduce-on-plateau
        return torch.optim.Adam(cnn.parameters(), lr=lr, eps=cfg.adam_eps)
    if cfg.optimizer == "adamw":  # AdamW, warm-up then cosine over the budget
        return torch.optim.AdamW(cnn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adam or adamw")


def _cnn_items(
    cfg: TrainConfig, train: Sequence[LabelledClip], frames: dict[str, np.ndarray], rng: np.random.Generator
) -> list[Item]:
    """One epoch's training frames. ``mil``: whole clips in a random order, each
    ``frames_per_clip`` frames in frame order (drawn again for a short clip); else up to
    ``frames_per_clip`` distinct frames of every clip, shuffled together."""
    if cfg.loss == "mil":
        order = rng.permutation(len(train))
        return [
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
    items = [
        (c.path, int(i), c.target(int(i)))
        for c in train
        for i in rng.choice(len(frames[c.path]), min(cfg.frames_per_clip, len(frames[c.path])), replace=False)
    ]
    rng.shuffle(items)
    return items


def _cnn_lr(cfg: TrainConfig, loop: StageLoop, progress: float) -> float:
    """Stage 1's learning rate at ``progress`` epochs: the plateau-halved one (Adam), or
    AdamW's warm-up and cosine through whichever budget binds, minutes or epochs."""
    if cfg.optimizer != "adamw":
        return float(loop.st["lr"])
    frac = schedule_fraction(loop.elapsed(), loop.budget_s, progress, cfg.cnn_epochs)
    lr = cfg.lr * (min(1.0, frac / 0.03) if frac < 0.03 else 0.5 * (1 + math.cos(math.pi * frac)))
    return max(lr, cfg.lr * 0.01)


def _cnn_loss(
    cfg: TrainConfig,
    net: nn.Module,
    chunk: list[Item],
    frames: dict[str, np.ndarray],
    gen: torch.Generator,
    weights: torch.Tensor,
    findings: dict[str, tuple[int, int] | None] | None = None,
) -> torch.Tensor:
    """Stage 1's loss on one batch: augmented, noisy frames; the class loss (``cfg.loss``)
    plus reconstruction, plus the auxiliary findings' where the model has their heads."""
    dev = weights.device
    x = to_model_input(np.stack([frames[p][i] for p, i, _ in chunk]), dev)
    y = torch.tensor([s for _, _, s in chunk], device=dev)
    clean = augment(x, gen, padding=cfg.augment_padding).contiguous(memory_format=torch.channels_last)
    noisy = (clean + 0.03 * torch.randn(clean.shape, generator=gen).to(dev)).clamp(0, 1)
    with autocast(cfg.bf16, dev):
        out = net(noisy)
        if cfg.loss == "mil":
            per_clip = out.logits.view(-1, cfg.frames_per_clip, out.logits.shape[-1])
            loss = mil_ordinal_loss(per_clip, y[:: cfg.frames_per_clip], weights)
        elif cfg.loss == "sord":
            loss = sord_loss(out.logits, y, weights, cfg.sord_alpha)
        elif cfg.loss == "coral":
            assert out.cumulative is not None, "the coral loss needs a model with a CORAL head"
            loss = coral_loss(out.cumulative, y, weights)
        else:
            loss = F.cross_entropy(out.logits.float(), y, weight=weights, label_smoothing=0.1)
        loss = loss + recon_term(cfg.recon_weight, out.reconstruction, clean)
        if out.aux is not None and findings is not None:
            flags = [findings.get(p) for p, _, _ in chunk]
            known = torch.tensor([f is not None for f in flags], device=dev)
            target = torch.tensor([f if f is not None else (0, 0) for f in flags], device=dev)
            loss = loss + cfg.aux_weight * aux_loss(out.aux, target, known)
        return loss


def _data_parallel(cnn: nn.Module, dev: torch.device) -> nn.Module:
    """``cnn`` under DistributedDataParallel when torchrun runs several processes."""
    rank, world = dist_info()
    if world == 1:
        return cnn
    from torch.nn.parallel import DistributedDataParallel

    log(f"rank {rank}: data-parallel over {world} processes")
    return DistributedDataParallel(cnn, device_ids=[dev.index] if dev.type == "cuda" else None)


def train_cnn(r: StageRun) -> dict[str, Any]:
    """Stage 1. Returns the best validation metrics; leaves the best weights in ``model``."""
    cfg, model, train, val, frames, work, run = r.cfg, r.model, r.train, r.val, r.frames, r.work, r.run
    files = StageFiles.named(work, "cnn")
    fresh = {"epoch": 0, "elapsed_s": 0.0, "best": None, "done": False, "lr": cfg.lr, "since_best": 0}
    loop = StageLoop(run, "cnn", files, epochs=cfg.cnn_epochs, minutes=cfg.cnn_minutes, fresh=fresh)
    st = loop.st
    st.setdefault("lr", cfg.lr)
    st.setdefault("since_best", 0)
    assert files.best is not None
    if st["done"]:
        done = f"best val macro-F1 {st['best']['macro_f1']:.3f}" if "macro_f1" in st["best"] else "no validation"
        log(f"stage 1 already done ({done}); loading it")
        load_state(files.best, model.cnn)
        return dict(st["best"])
    cnn = model.cnn
    cnn.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = _cnn_optimizer(cfg, cnn, st["lr"])
    if loop.resume_weights(cnn, opt):
        log(f"resuming stage 1 at epoch {st['epoch']} ({st['elapsed_s'] / 60:.1f} min done)")
    dev = device_of(cnn)
    rank, world = dist_info()
    net = _data_parallel(cnn, dev)
    weights = class_weights([c.score for c in train]).to(dev)
    findings = {c.path: c.findings for c in train}
    # mil: whole clips per batch, frames_per_clip frames each (drawn again for a short clip)
    fpc = cfg.frames_per_clip
    batch = max(1, cfg.batch_size // fpc) * fpc if cfg.loss == "mil" else cfg.batch_size
    key = "clip_macro_f1" if cfg.loss == "mil" else "macro_f1"
    rng = np.random.default_rng(cfg.seed + st["epoch"])  # same frame list on every rank
    gen = torch.Generator().manual_seed(cfg.seed + st["epoch"] + 7919 * rank)
    if st["epoch"] > 0 and not loop.resume_streams(rng, gen, dev):
        log("  (a checkpoint without its random streams: the resumed epochs draw other frames)")
    val_idx = {c.path: evenly_spaced(len(frames[c.path]), cfg.val_frames_per_clip) for c in val}
    threads_before = torch.get_num_threads()
    tuner = thread_tuner(cfg.threads, dev)
    for epoch in loop.epochs(lambda: st["since_best"] < cfg.early_stop, agree=True):
        cnn.train()
        items = _cnn_items(cfg, train, frames, rng)
        nb = batches_per_epoch(  # each rank takes every world-th batch
            len(items),
            batch * world,
            clips=count(len(train), "training clip"),
            frames_per_clip=cfg.frames_per_clip,
            step="training",
        )
        t_epoch, tot, seen, lr = time.time(), 0.0, 0, st["lr"]
        bar = loop.bar(nb, f"CNN epoch {epoch + 1}", disable=rank != 0 or nb == 0)
        for b in range(nb):
            lr = _cnn_lr(cfg, loop, epoch + b / nb)
            for g in opt.param_groups:
                g["lr"] = lr
            chunk = items[(b * world + rank) * batch : (b * world + rank + 1) * batch]
            threads = tuner.begin() if tuner is not None else torch.get_num_threads()
            loss = _cnn_loss(cfg, net, chunk, frames, gen, weights, findings)
            optimizer_step(opt, loss, cnn, max_norm=5.0)
            tot += float(loss.detach()) * len(chunk)
            if tuner is not None:
                tuner.end()
            seen += len(chunk)
            bar.update(1)
            fps = world * seen / max(time.time() - t_epoch, 1e-6)
            bar.set_postfix(loss=f"{tot / seen:.4f}", lr=f"{lr:.1e}", fps=f"{fps:.1f}", thr=threads, refresh=False)
        bar.close()
        if tuner is not None:
            torch.set_num_threads(tuner.current)  # for the validation (not a probe's count)
        if tuner is not None and tuner.switches:
            log(f"  CPU threads: {'; '.join(tuner.switches)}")
            tuner.switches.clear()
        loop.end_epoch()
        if rank == 0 and not val:  # no validation patients: the last epoch is the model
            st["best"] = {"epoch": st["epoch"], "train_loss": tot / max(seen, 1)}
            save_state(files.best, cnn)
            log(f"epoch {st['epoch']}: train loss {tot / max(seen, 1):.4f} lr {lr:.1e} (no validation: last kept)")
        elif rank == 0:  # rank 0 validates, decides the learning rate and keeps the checkpoints
            m = validate_cnn(model, val, frames, val_idx, cfg.bf16)
            log(
                f"epoch {st['epoch']}: train loss {tot / max(seen, 1):.4f}  val loss {m['loss']:.4f} "
                f"acc {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f} | clip (worst frame) macro-F1 "
                f"{m['clip_macro_f1']:.3f} lr {lr:.1e} ({st['elapsed_s'] / 60:.1f} min)"
            )
            if plateau_step(st, m, cfg, key=key):
                save_state(files.best, cnn)
        st["lr"], st["since_best"] = from_rank0([st["lr"], st["since_best"]])
        st["since_best"] = int(st["since_best"])
        loop.save_streams(rng, gen, dev)
        if rank != 0:
            continue
        if st["since_best"] >= cfg.early_stop:
            log(f"  early stop: no better validation macro-F1 for {cfg.early_stop} epochs")
        loop.save_last(cnn, opt)
    torch.set_num_threads(threads_before)
    loop.finish()
    if rank != 0:
        return {}
    load_state(files.best, cnn)
    return dict(st["best"])


Window = tuple[np.ndarray, np.ndarray]  # features (T, F) and frame targets (T,)


def _lstm_windows(
    cfg: TrainConfig, train: Sequence[LabelledClip], feats: dict[str, np.ndarray], rng: np.random.Generator
) -> list[Window]:
    """One epoch of stage 2: random windows of ``seq_len`` frames (two per window's
    length of each clip), or with ``mil`` every whole clip; shuffled."""
    windows = []
    for c in train:
        f = feats[c.path]
        if cfg.loss == "mil":
            windows.append((f, np.full(len(f), c.score)))
            continue
        for _ in range(max(1, math.ceil(len(f) / cfg.seq_len)) * 2):
            s = int(rng.integers(0, max(1, len(f) - cfg.seq_len + 1)))
            n = len(f[s : s + cfg.seq_len])
            windows.append((f[s : s + cfg.seq_len], np.array([c.target(s + j) for j in range(n)])))
    rng.shuffle(windows)  # type: ignore[arg-type]
    return windows


def _lstm_loss(
    cfg: TrainConfig, head: nn.Module, chunk: list[Window], feature_dim: int, weights: torch.Tensor
) -> torch.Tensor:
    """Stage 2's loss on one batch of windows, zero-padded to one length (masked)."""
    dev = weights.device
    mil = cfg.loss == "mil"
    length = max(len(f) for f, _ in chunk) if mil else cfg.seq_len
    x = torch.zeros(len(chunk), length, feature_dim)
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
        return mil_ordinal_loss(logits, y[:, 0], weights, mask)
    if cfg.loss == "sord":
        return sord_loss(logits[mask], y[mask], weights, cfg.sord_alpha)
    return F.cross_entropy(logits[mask], y[mask], weight=weights, label_smoothing=0.1)


def train_lstm(r: StageRun, feats: dict[str, np.ndarray]) -> dict[str, Any]:
    """Stage 2 on frozen CNN features. Leaves the best head in ``model.sequence``.

    Frame loss: random windows of ``seq_len`` frames, best epoch by validation frame
    macro-F1. ``loss="mil"``: whole clips, :func:`mil_ordinal_loss`, best epoch by
    validation clip macro-F1 (persistent-worst rule)."""
    cfg, model, train, val, work, run = r.cfg, r.model, r.train, r.val, r.work, r.run
    head = model.sequence
    assert head is not None
    best_path = work / "lstm_best.safetensors"
    st = run.data.setdefault("lstm", {"epoch": 0, "best": None, "done": False})
    if st["done"]:
        load_state(best_path, head)
        return dict(st["best"])
    if st["epoch"] > 0:  # interrupted: the stage keeps no last checkpoint (it takes minutes), so start it again
        # (the head here is as initialised: run_training builds the model after seeding)
        log(f"stage 2 was interrupted after epoch {st['epoch']}: starting it again")
        st.update(epoch=0, best=None)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lstm_lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=5)
    weights = class_weights([c.score for c in train]).to(device_of(head))
    level = "clip" if cfg.loss == "mil" else "frame"  # the validation macro-F1 that picks the best epoch
    t0 = time.time()
    patience, bad = 15, 0
    while st["epoch"] < cfg.lstm_epochs and time.time() - t0 < cfg.lstm_minutes * 60 and bad < patience:
        head.train()
        windows = _lstm_windows(cfg, train, feats, rng)
        for b in range(0, len(windows), cfg.lstm_batch_size):
            loss = _lstm_loss(cfg, head, windows[b : b + cfg.lstm_batch_size], model.cfg.feature_dim, weights)
            optimizer_step(opt, loss, head, max_norm=1.0)
        st["epoch"] += 1
        if not val:  # no validation patients: the last epoch is the model
            st["best"] = {"epoch": st["epoch"]}
            save_state(best_path, head)
            run.save()
            continue
        m = evaluate_sequence(head, val, feats)
        sched.step(m[level]["macro_f1"])
        log(
            f"lstm epoch {st['epoch']}: val frame acc {m['frame']['accuracy']:.3f} F1 {m['frame']['macro_f1']:.3f}"
            f" | clip acc {m['clip']['accuracy']:.3f} F1 {m['clip']['macro_f1']:.3f}"
        )
        if st["best"] is None or m[level]["macro_f1"] > st["best"][level]["macro_f1"]:
            st["best"] = {**m, "epoch": st["epoch"]}
            save_state(best_path, head)
            bad = 0
        else:
            bad += 1
        run.save()
    st["elapsed_s"] = time.time() - t0
    st["stopped_by"] = stop_reason(st["epoch"], cfg.lstm_epochs, out_of_time=bad < patience)
    if st["stopped_by"] == BUDGET:
        log(budget_warning("lstm", cfg.lstm_minutes, st["epoch"], cfg.lstm_epochs))
    st["done"] = True
    run.save()
    load_state(best_path, head)
    return dict(st["best"])


def _e2e_starts(
    cfg: TrainConfig, train: Sequence[LabelledClip], frames: dict[str, np.ndarray], rng: np.random.Generator
) -> list[tuple[LabelledClip, int]]:
    """One epoch of stage 3: (clip, first frame) of ``frames_per_clip // e2e_seq_len``
    windows of every clip at least a window long (shorter clips are skipped), shuffled."""
    n_seq = cfg.e2e_seq_len
    starts = []
    for c in train:
        n = len(frames[c.path])
        if n >= n_seq:
            for _ in range(max(1, cfg.frames_per_clip // n_seq)):
                starts.append((c, int(rng.integers(0, n - n_seq + 1))))
    rng.shuffle(starts)  # type: ignore[arg-type]
    return starts


def _e2e_loss(
    cfg: TrainConfig,
    model: HybridModel,
    chunk: list[tuple[LabelledClip, int]],
    frames: dict[str, np.ndarray],
    gen: torch.Generator,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Stage 3's loss on one batch of windows: one augmentation draw per window."""
    assert model.sequence is not None
    dev, n_seq, bs = weights.device, cfg.e2e_seq_len, len(chunk)
    x = to_model_input(np.concatenate([frames[c.path][s : s + n_seq] for c, s in chunk]), dev)
    y = torch.tensor(np.stack([[c.target(s + j) for j in range(n_seq)] for c, s in chunk]), device=dev)
    clean = augment(x, gen, group=n_seq, padding=cfg.augment_padding).contiguous(memory_format=torch.channels_last)
    with autocast(cfg.bf16, dev):
        out = model.cnn(clean)
        logits, _ = model.sequence(out.features.float().view(bs, n_seq, -1))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), weight=weights)
        return loss + recon_term(cfg.recon_weight, out.reconstruction, clean)


def _e2e_start(
    cfg: TrainConfig, model: HybridModel, val: Sequence[LabelledClip], frames: dict[str, np.ndarray], loop: StageLoop
) -> None:
    """Stage 3's first best: the two-stage model as epoch 0 (kept unless an epoch beats it)."""
    assert model.sequence is not None and loop.files.best is not None
    _, feats = cnn_features(model, val, frames, cfg.bf16)
    start = {**evaluate_sequence(model.sequence, val, feats), "epoch": 0}
    loop.st["best"] = start
    save_state(loop.files.best, model)
    log(f"end to end: starting from val frame macro-F1 {start['frame']['macro_f1']:.3f}")


def train_end_to_end(r: StageRun) -> dict[str, Any]:
    """Stage 3 (optional): CNN and LSTM fine-tuned together on windows of ``e2e_seq_len``
    consecutive frames, from the two-stage result. Keeps the epoch with the best
    validation frame macro-F1 (the two-stage model counts as epoch 0), so it can only
    keep or improve the validation score. Rank 0 only, like stage 2."""
    cfg, model, train, val, frames, work, run = r.cfg, r.model, r.train, r.val, r.frames, r.work, r.run
    head = model.sequence
    assert head is not None
    files = StageFiles.named(work, "e2e")
    assert files.best is not None
    fresh = {"epoch": 0, "elapsed_s": 0.0, "best": None, "done": False}
    loop = StageLoop(run, "e2e", files, epochs=cfg.e2e_epochs, minutes=cfg.e2e_minutes, fresh=fresh)
    st = loop.st
    if st["done"]:
        if files.best.is_file():
            load_state(files.best, model)
        return dict(st["best"] or {})
    dev = device_of(model)
    if st["best"] is None:
        _e2e_start(cfg, model, val, frames, loop)
    model.cnn.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.e2e_lr)
    if loop.resume_weights(model, opt, need_optim=True):  # an interrupted run
        log(f"resuming the end-to-end stage at epoch {st['epoch']}")
    elif st["epoch"] > 0 and files.best.is_file():  # a run of an older lusviewer kept only its best epoch
        load_state(files.best, model)
        log(f"resuming the end-to-end stage at epoch {st['epoch']} from its best epoch (no last checkpoint)")
    weights = class_weights([c.score for c in train]).to(dev)
    torch.manual_seed(cfg.seed + 104729)  # dropout: the same start whether stage 2 ran in this process or not
    rng = np.random.default_rng(cfg.seed + 104729 + st["epoch"])
    gen = torch.Generator().manual_seed(cfg.seed + 104729 + st["epoch"])
    if st["epoch"] > 0 and not loop.resume_streams(rng, gen, dev):
        log("  (a checkpoint without its random streams: the resumed epochs draw other windows)")
    bs = cfg.e2e_batch_size
    for epoch in loop.epochs():
        model.train()
        starts = _e2e_starts(cfg, train, frames, rng)
        bar = loop.bar(len(starts) // bs, f"end-to-end epoch {epoch + 1}")
        tot, seen = 0.0, 0
        for b in range(0, len(starts) - bs + 1, bs):
            loss = _e2e_loss(cfg, model, starts[b : b + bs], frames, gen, weights)
            optimizer_step(opt, loss, model, max_norm=1.0)
            tot += float(loss.detach()) * bs
            seen += bs
            bar.update(1)
            bar.set_postfix(loss=f"{tot / seen:.4f}", refresh=False)
        bar.close()
        loop.end_epoch()
        _, feats = cnn_features(model, val, frames, cfg.bf16)
        m = evaluate_sequence(head, val, feats)
        log(
            f"end-to-end epoch {st['epoch']}: train loss {tot / max(seen, 1):.4f}  val frame acc "
            f"{m['frame']['accuracy']:.3f} F1 {m['frame']['macro_f1']:.3f} | clip acc {m['clip']['accuracy']:.3f}"
        )
        if m["frame"]["macro_f1"] > st["best"]["frame"]["macro_f1"]:
            st["best"] = {**m, "epoch": st["epoch"]}
            save_state(files.best, model)
        loop.save_streams(rng, gen, dev)
        loop.save_last(model, opt)
    loop.finish()
    if files.best.is_file():
        load_state(files.best, model)
    return dict(st["best"])
