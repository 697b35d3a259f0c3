"""Patient-disjoint k-fold cross-validation of the paper's three variants.

For every fold of :func:`~lusviewer.training.data.group_kfold` the test patients are
never seen in training: validation patients for early stopping are split off the
fold's *training* side, so nothing is tuned on a test fold. Each variant
(``densenet``, ``cnn``, ``cnn_lstm``) is trained on the same folds with the same
settings and evaluated at frame and clip level. Every fold/variant keeps its
checkpoints and its result under ``<out>/fold<i>/<variant>/``, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lusviewer.model.hybrid import PAPER_VARIANTS, VARIANT_NAMES, HybridModel
from lusviewer.report.csvsafe import safe_writer
from lusviewer.training.card import labels_note
from lusviewer.training.data import (
    LabelledClip,
    cached_frames,
    group_kfold,
    load_dataset_with,
    split_by_group,
    split_warnings,
)
from lusviewer.training.evaluate import LEVELS, METRICS, confusion_png
from lusviewer.training.loop import RunState, device_of, log, machine
from lusviewer.training.metrics import AUC_KEYS, ordinal_aucs, patient_agreement
from lusviewer.training.stages import StageRun, train_cnn, train_end_to_end, train_lstm
from lusviewer.training.train import (
    TrainConfig,
    check_init_options,
    check_loss,
    check_recipe,
    initial_densenet,
    model_config,
)
from lusviewer.training.validation import (
    clip_metrics,
    cnn_frames,
    majority_baseline,
    sequence_probs,
)
from lusviewer.wording import count

MAJORITY = "majority"


def run_crossval(
    cfg: TrainConfig,
    *,
    k: int = 5,
    variants: tuple[str, ...] = PAPER_VARIANTS,
    only_folds: Sequence[int] | None = None,
    repeats: int = 1,
) -> Path | None:
    """Train and test every variant on every fold; write report.md, metrics.csv, PNGs to ``cfg.out``.

    ``only_folds`` (0-based) trains just those folds in this process and writes no report
    (returns None), so that folds can run in parallel: several processes, GPUs or
    machines sharing ``cfg.out``, which never read each other's files. A later run
    without it reads every fold's result, trains any that is missing, and writes the
    report. Results are written atomically (temporary file, then rename).

    ``repeats`` > 1 repeats the whole k-fold with other fold draws (repeat r splits with
    seed ``cfg.seed + 1000 r``; repeat 0 is the single run's split), each under
    ``<out>/rep<r>/`` with its own report, and writes ``<out>/report.md`` from every
    test clip's out-of-fold prediction (:mod:`lusviewer.training.cvreport`): the
    variants and the constant answers, with patient-bootstrap intervals and paired
    differences. Two runs with the same data, ``-k``, ``--seed`` and ``--repeats`` test
    on the very same folds, so their reports can be compared clip by clip
    (``lusviewer crossval-report``).
    """
    if only_folds is not None:
        bad = [f for f in only_folds if not 0 <= f < k]
        if bad:
            raise ValueError(f"folds {bad} outside 0..{k - 1}")
    if repeats < 1:
        raise ValueError(f"repeats must be 1 or more, got {repeats}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    check_init_options(cfg)
    clips = load_dataset_with(cfg)
    check_loss(cfg, clips)
    plans = []
    for r in range(repeats):
        rcfg = replace(cfg, seed=cfg.seed + 1000 * r, out=str(out if repeats == 1 else out / f"rep{r}"))
        folds = group_kfold(clips, k=k, seed=rcfg.seed)
        _check_fold_sides(cfg, folds)  # before any decoding: a fold whose training side cannot be split
        _check_fold_dirs(rcfg, clips, folds, variants, Path(rcfg.out), only_folds)  # before any decoding or training
        plans.append((r, rcfg, folds))
    t0 = time.time()
    size = model_config(cfg).input_size
    frames = {c.path: cached_frames(c.path, size, cfg.cache_dir, cfg.crop) for c in clips}
    patients = count(len({c.group for c in clips}), "patient")
    log(f"{count(len(clips), 'clip')}, {patients}, {k} folds; decoded in {time.time() - t0:.0f} s")
    reports: list[Path] = []
    for r, rcfg, folds in plans:
        if repeats > 1:
            log(f"repeat {r + 1}/{repeats} (fold seed {rcfg.seed})")
        report = _run_repeat(rcfg, clips, folds, frames, variants, only_folds, repeat=r, t0=t0)
        if report is not None:
            reports.append(report)
    if only_folds is not None:
        log(f"folds {', '.join(map(str, only_folds))} done; the report comes from a run without --run-folds")
        return None
    if repeats == 1:
        return reports[0]
    from lusviewer.training.cvreport import write_repeated_report

    return write_repeated_report([out], out / "report.md", command=cfg.command)


def _check_fold_sides(cfg: TrainConfig, folds: list[tuple[list[LabelledClip], list[LabelledClip]]]) -> None:
    """Each fold's training side is split again for validation (``--val-fraction``): one of
    fewer than 2 patients cannot be, which is said now, naming the fold and the ways out,
    rather than after the decoding as a split of '1 patient' where the data has more."""
    if cfg.val_fraction <= 0:
        return
    for fi, (train_all, test) in enumerate(folds):
        n = len({c.group for c in train_all})
        if n < 2:
            total = n + len({c.group for c in test})
            raise ValueError(
                f"fold {fi} of {len(folds)}: its training side has {count(n, 'patient')} (of {total}), which "
                f"--val-fraction {cfg.val_fraction:g} cannot split into training and validation patients; "
                f"use {'fewer folds (-k), ' if len(folds) > 2 else ''}more patients, or --val-fraction 0 "
                "(fixed epochs, no validation)"
            )


def _run_repeat(
    cfg: TrainConfig,
    clips: list[LabelledClip],
    folds: list[tuple[list[LabelledClip], list[LabelledClip]]],
    frames: dict[str, np.ndarray],
    variants: tuple[str, ...],
    only_folds: Sequence[int] | None,
    *,
    repeat: int,
    t0: float,
) -> Path | None:
    """One k-fold pass (one repeat) under ``cfg.out``; its report, or None with ``only_folds``."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    k = len(folds)
    results: list[dict[str, Any]] = []
    for fi, (train_all, test) in enumerate(folds):
        if only_folds is not None and fi not in only_folds:
            continue
        results.append(_majority_baseline(fi, train_all, test, frames))
        train, val = split_by_group(train_all, val_fraction=cfg.val_fraction, seed=cfg.seed + fi)
        for note in split_warnings(train, val):
            log(f"warning: fold {fi}: {note}")
        groups = [{c.group for c in s} for s in (train, val, test)]
        assert not (groups[0] & groups[2] or groups[1] & groups[2] or groups[0] & groups[1]), "patient leak"
        fold_cfg = replace(cfg, seed=cfg.seed + fi)  # the pretraining's seed and split follow the fold's
        init = initial_densenet(
            fold_cfg, train, val, frames, out / f"fold{fi}" / "pretrain", what=f"fold {fi}", held_out=test
        )
        for variant in variants:
            work = out / f"fold{fi}" / variant
            done = work / "result.json"
            vcfg = replace(cfg, variant=variant, work_dir=str(work))
            run = RunState(work)
            check_recipe(vcfg, run, clips)  # never mix results of another recipe or data into this report
            if done.is_file():
                results.append(json.loads(done.read_text()))  # its test patients: checked above
                continue
            work.mkdir(parents=True, exist_ok=True)
            run.data["fold"] = {"k": k, "test_patients": sorted(groups[2])}
            run.save()
            log(f"fold {fi + 1}/{k}, {variant}: train {len(train)} / val {len(val)} / test {count(len(test), 'clip')}")
            t_run = time.time()
            run.data.setdefault("config", asdict(vcfg))
            res, model = _train_and_test(vcfg, fi, init, (train, val, test), frames, out, run)
            record = {
                "fold": fi,
                "variant": variant,
                "repeat": repeat,
                "fold_seed": cfg.seed,
                "test_patients": sorted(groups[2]),
                "n_test_clips": len(test),
                **{level: res[level] for level in LEVELS},
                "confusion": res["confusion"],
                "auc": res["auc"],
                "clips": res["clips"],
                "elapsed_s": round(time.time() - t_run, 1),
                "machine": machine(device_of(model)),
            }
            tmp = done.with_name(done.name + ".tmp")
            tmp.write_text(json.dumps(record, indent=2))
            os.replace(tmp, done)
            results.append(record)
    if only_folds is not None:
        return None
    labels = labels_note(cfg, clips)
    return write_cv_report(
        results, out, cfg=cfg, k=k, variants=variants, elapsed_s=time.time() - t0, labels_note=f"Labels: {labels}."
    )


def _train_and_test(
    vcfg: TrainConfig,
    fi: int,
    init: str | None,
    sides: tuple[list[LabelledClip], list[LabelledClip], list[LabelledClip]],
    frames: dict[str, np.ndarray],
    out: Path,
    run: RunState,
) -> tuple[dict[str, Any], HybridModel]:
    """Train one variant (``vcfg``) on fold ``fi``'s training and validation sides and
    test it on its test side: :func:`clip_metrics` with every clip's row, and the model."""
    train, val, test = sides
    work = Path(vcfg.work_dir)
    torch.manual_seed(vcfg.seed + fi)
    model = HybridModel(model_config(vcfg))
    if init:
        from lusviewer.model.pretrained import init_densenet_from

        init_densenet_from(model, init)
    from lusviewer.inference.engine import resolve_device

    model.to(resolve_device(vcfg.device))
    if vcfg.variant == "cnn_lstm":
        _reuse_cnn_stage(out / f"fold{fi}" / "cnn", work, run)
    stages = StageRun(vcfg, model, train, val, frames, work, run)
    train_cnn(stages)
    needed = test if model.sequence is None else [*train, *val, *test]
    # One pass of the CNN gives the test clips' probabilities, features and auxiliary
    # findings; a second only where the end-to-end stage changed the CNN after it.
    cnn = cnn_frames(model, needed, frames, vcfg.bf16)
    probs, feats, aux = cnn.probs, cnn.feats, cnn.aux
    if model.sequence is not None:
        train_lstm(stages, feats)
        if vcfg.e2e_epochs > 0:
            train_end_to_end(stages)
            cnn = cnn_frames(model, test, frames, vcfg.bf16)
            feats, aux = cnn.feats, cnn.aux
        probs = {c.path: sequence_probs(model.sequence, feats[c.path]) for c in test}
    res = clip_metrics(test, lambda c: probs[c.path], per_clip=True)
    for row, c in zip(res["clips"], test, strict=True):
        row["p_mean"] = [round(float(v), 5) for v in probs[c.path].mean(0)]
        if c.findings is not None:
            row["findings"] = list(c.findings)
        if c.path in aux:
            row["aux"] = [round(float(v), 5) for v in aux[c.path].mean(0)]
    _save_frame_probs(work / "oof_probs.npz", {Path(c.path).name: probs[c.path] for c in test})
    return res, model


def _save_frame_probs(path: Path, probs: dict[str, np.ndarray]) -> None:
    """Every test frame's class probabilities (float16: small enough to keep with the
    results), keyed by clip file name, written atomically: what calibration is fitted on,
    without retraining."""
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **{k: v.astype(np.float16) for k, v in probs.items()})  # type: ignore[arg-type]
    os.replace(tmp, path)


def _initialisation_note(cfg: TrainConfig) -> str:
    if cfg.pretrain_epochs > 0:
        return (
            f"DenseNet-201 branch: pretrained on each fold's training patients' frames (SimSiam, up to "
            f"{cfg.pretrain_epochs} epochs or {cfg.pretrain_minutes:g} min; never on its validation or test "
            "patients); the linear probe of each is in `fold<i>/pretrain/densenet.json`. The rest from scratch."
        )
    if cfg.init_densenet:
        return f"DenseNet-201 branch initialised from `{Path(cfg.init_densenet).name}`; the rest from scratch."
    return "Every weight from scratch (no ImageNet or other pretrained weights)."


def _majority_baseline(
    fold: int, train: list[LabelledClip], test: list[LabelledClip], frames: dict[str, np.ndarray]
) -> dict[str, Any]:
    """The floor every variant must clear: always the training side's most common score."""
    major, frame, clip = majority_baseline(train, test, frames)
    return {"fold": fold, "variant": MAJORITY, "majority_score": major, "frame": frame, "clip": clip}


def _check_fold_dirs(
    cfg: TrainConfig,
    clips: list[LabelledClip],
    folds: list[tuple[list[LabelledClip], list[LabelledClip]]],
    variants: tuple[str, ...],
    out: Path,
    only_folds: Sequence[int] | None,
) -> None:
    """Refuse, before any work, an ``--out`` whose fold folders hold another run: another
    recipe or data (:func:`check_recipe`), or other test patients (another ``-k``,
    seed or data), finished or not. The ``cnn`` folder is checked too where CNN+LSTM
    would reuse its stage 1."""
    k = len(folds)
    for fi, (_train, test) in enumerate(folds):
        if only_folds is not None and fi not in only_folds:
            continue
        tested = sorted({c.group for c in test})
        names = [*variants, *(["cnn"] if "cnn_lstm" in variants and "cnn" not in variants else [])]
        for variant in names:
            work = out / f"fold{fi}" / variant
            if not work.is_dir():
                continue
            run = RunState(work)
            check_recipe(replace(cfg, variant=variant, work_dir=str(work)), run, clips)
            before = run.data.get("fold", {}).get("test_patients")
            if before is None and (work / "result.json").is_file():
                before = json.loads((work / "result.json").read_text()).get("test_patients")
            if before is not None and sorted(before) != tested:
                raise SystemExit(
                    f"{work}: holds fold {fi} of another split (other test patients: another -k, --seed or "
                    f"data; this run has k={k}); use a new --out"
                )


def _reuse_cnn_stage(cnn_work: Path, work: Path, run: RunState) -> None:
    """CNN+LSTM's stage 1 *is* the ``cnn`` variant's training (same architecture, seed,
    data and settings), so when this fold's ``cnn`` run has finished stage 1 its best
    checkpoint is taken instead of training the same CNN twice."""
    src = cnn_work / "cnn_best.safetensors"
    state = cnn_work / "state.json"
    if "cnn" in run.data or not (src.is_file() and state.is_file()):
        return
    stage = json.loads(state.read_text()).get("cnn", {})
    if not stage.get("done"):
        return
    shutil.copyfile(src, work / "cnn_best.safetensors")
    run.data["cnn"] = {**stage, "reused_from": str(cnn_work)}
    run.save()
    log(f"  stage 1 reused from {cnn_work} (the same CNN, trained once)")


def _mean_sd(values: list[float]) -> str:
    a = np.asarray(values, dtype=np.float64)
    return f"{a.mean():.3f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.3f}"


def write_cv_report(
    results: list[dict[str, Any]],
    out: Path,
    *,
    cfg: TrainConfig,
    k: int,
    variants: tuple[str, ...],
    elapsed_s: float,
    labels_note: str = "",
) -> Path:
    with open(out / "metrics.csv", "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
        w = safe_writer(fh)
        w.writerow(["fold", "variant", "level", "n", *METRICS])
        for r in results:
            for level in LEVELS:
                m = r[level]
                w.writerow([r["fold"], r["variant"], level, int(m["n"]), *(f"{m[key]:.4f}" for key in METRICS)])
    names = {**VARIANT_NAMES, MAJORITY: "always the majority score (baseline)"}
    trained = [r for r in results if r["variant"] != MAJORITY]
    timed = [r["elapsed_s"] for r in trained if "elapsed_s" in r]
    wall = (
        f"training and testing took {sum(timed) / 60:.1f} min summed over the {len(timed)} runs"
        if len(timed) == len(trained)
        else f"wall time {elapsed_s / 60:.1f} min in this run (runs resumed from results without timings not counted)"
    )
    # Where the folds trained (recorded with each result; folds may run elsewhere than the report).
    machines = sorted({r["machine"] for r in trained if "machine" in r})
    unrecorded = sum("machine" not in r for r in trained)
    if unrecorded:
        machines.append(f"not recorded for {unrecorded} runs")
    device = "; ".join(machines)
    lines = [
        f"# {k}-fold patient-disjoint cross-validation",
        "",
        f"Command: `{cfg.command}`  ",
        f"Seed {cfg.seed}; data `{cfg.data}`; {'tiny test architecture; ' if cfg.tiny else ''}"
        f"input {model_config(cfg).input_size} px; {wall}; trained on: {device}.",
        "",
        _initialisation_note(cfg),
        "",
        "Mean ± sd over folds. Sensitivity, specificity and F1 are macro averages over the four scores "
        "(one-vs-rest), as in the paper's Table 2; within-one and quadratic-weighted kappa (QWK) respect "
        "the ordinal scale. Clip level: the clip score by the persistent-worst rule. " + labels_note,
        "",
    ]
    for level in LEVELS:
        lines += [
            f"## {level.capitalize()} level",
            "",
            "| model | accuracy | sensitivity | specificity | F1 | within-one | QWK |",
            "|---|---|---|---|---|---|---|",
        ]
        for v in (*variants, MAJORITY):
            rs = [r[level] for r in results if r["variant"] == v]
            if not rs:
                continue
            cells = [_mean_sd([m[key] for m in rs]) for key in ("accuracy", "sensitivity", "specificity")]
            cells += [_mean_sd([m[key] for m in rs]) for key in ("macro_f1", "within_one", "qwk")]
            lines.append(f"| {names.get(v, v)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Confusion matrices (summed over folds)", ""]
    for v in variants:
        for level in LEVELS:
            cms = [np.asarray(r["confusion"][level]) for r in results if r["variant"] == v]
            if cms:
                png = confusion_png(
                    np.sum(np.stack(cms), 0), out / f"confusion_{v}_{level}.png", f"{names.get(v, v)}: {level}s"
                )
                lines.append(f"![{v} {level}]({png.name})")
    lines += _out_of_fold_sections(results, out, cfg=cfg, variants=variants, names=names)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"


def _out_of_fold_sections(
    results: list[dict[str, Any]], out: Path, *, cfg: TrainConfig, variants: tuple[str, ...], names: dict[str, str]
) -> list[str]:
    """Threshold-free clip AUCs and patient-level agreement from every test clip's
    out-of-fold prediction; writes ``predictions.csv``. Fold results written before
    lusviewer recorded per-clip predictions are named, not guessed."""
    # A variant counts only when every one of its folds recorded its clips: rows over
    # some folds only would not be out-of-fold estimates over all patients.
    missing = sorted({r["variant"] for r in results if r["variant"] in variants and "clips" not in r})
    with_clips = [r for r in results if r["variant"] in variants and r["variant"] not in missing]
    if not with_clips:
        return []
    with open(out / "predictions.csv", "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
        w = safe_writer(fh)
        w.writerow(
            ["fold", "variant", "clip", "patient", "expert_score", "clip_score", *(f"risk_ge{k}" for k in (1, 2, 3))]
        )
        for r in with_clips:
            for c in r["clips"]:
                rel = os.path.relpath(c["clip"], cfg.data) if cfg.data else c["clip"]
                w.writerow([r["fold"], r["variant"], rel, c["group"], c["score"], c["pred"], *c["risk"]])
    lines = [
        "## Threshold-free, clip level",
        "",
        "Area under the ROC curve for telling clips of score >= k from the others, from each clip's risk of a "
        "score >= k (its frames' probability of it, averaged over 0.2 s runs, at its highest); 0.5 is chance. "
        "Per fold: mean ± sd over the folds where both kinds occur; pooled: all out-of-fold clips together "
        "(models of different folds, so a looser summary). Every clip's prediction is in "
        "[predictions.csv](predictions.csv).",
        "",
        "| model | score >= 1 | score >= 2 | score >= 3 | pooled >= 1 | pooled >= 2 | pooled >= 3 |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        rs = [r for r in with_clips if r["variant"] == v]
        if not rs:
            continue
        per_fold = []
        for key in AUC_KEYS:
            vals = [r["auc"][key] for r in rs if r["auc"].get(key) is not None]
            note = f" ({len(vals)} of {len(rs)} folds)" if 0 < len(vals) < len(rs) else ""
            per_fold.append(_mean_sd(vals) + note if vals else "n/a")
        clips = [c for r in rs for c in r["clips"]]
        pooled = ordinal_aucs([c["score"] for c in clips], np.array([c["risk"] for c in clips]))
        cells = [*per_fold, *(f"{pooled[k]:.3f}" if np.isfinite(pooled[k]) else "n/a" for k in AUC_KEYS)]
        lines.append(f"| {names.get(v, v)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Patient level",
        "",
        "Each test patient's mean clip score (the LUS total score divided by the number of zones scanned), "
        "by the expert and by the model's clip scores, over all out-of-fold patients: mean absolute "
        "difference in score levels and Spearman's rank correlation, 95 % intervals by resampling patients; "
        "against the baseline (each fold's majority score: a constant answer within a fold, so no rank "
        "correlation), the paired difference in mean absolute difference.",
        "",
        "| model | patients | mean absolute difference | minus the baseline's | Spearman ρ |",
        "|---|---|---|---|---|",
    ]
    by_fold = {r["fold"]: r["majority_score"] for r in results if r["variant"] == MAJORITY and "majority_score" in r}
    first = [r for r in with_clips if r["variant"] == with_clips[0]["variant"]]
    baseline = (
        [{**c, "pred": by_fold[r["fold"]]} for r in first for c in r["clips"]]
        if all(r["fold"] in by_fold for r in first)
        else []
    )
    for v in variants:
        clips = [c for r in with_clips if r["variant"] == v for c in r["clips"]]
        if clips:
            lines.append(_patient_row(names.get(v, v), clips, baseline))
    if baseline:
        lines.append(_patient_row(names[MAJORITY], baseline, constant=True))
    lines.append("")
    if missing:
        lines += [
            f"Not in these two sections: {', '.join(missing)}, whose fold results predate per-clip records "
            "(rerun without their result.json to add them).",
            "",
        ]
    return lines


def _patient_row(
    name: str,
    clips: list[dict[str, Any]],
    baseline: list[dict[str, Any]] | None = None,
    *,
    constant: bool = False,
) -> str:
    """One row of the patient-level table: patients, MAE and Spearman with patient-bootstrap
    intervals, and with ``baseline`` (the same clips' baseline answers) the paired
    difference in MAE. ``constant``: a baseline whose rank correlation means nothing."""
    by_clip = {c["clip"]: c["pred"] for c in baseline or []}
    m, ci, ref = patient_agreement(
        [c["group"] for c in clips],
        [c["score"] for c in clips],
        [c["pred"] for c in clips],
        [by_clip[c["clip"]] for c in clips] if by_clip and not constant else None,
    )

    def cell(key: str) -> str:
        if not np.isfinite(m[key]) or (constant and key == "spearman"):
            return "n/a (constant)"
        lo, hi = ci.get(key, (np.nan, np.nan))
        return f"{m[key]:.3f}" + (f" ({lo:.3f} to {hi:.3f})" if np.isfinite(lo) else "")

    diff = "—"
    if ref is not None:
        lo, hi = ci.get("diff_mae", (np.nan, np.nan))
        diff = f"{m['mae'] - ref['mae']:+.3f} ({lo:+.3f} to {hi:+.3f})"
    return f"| {name} | {int(m['n'])} | {cell('mae')} | {diff} | {cell('spearman')} |"
