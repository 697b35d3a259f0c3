"""Evaluate a model on labelled clips through the real scoring engine.

Frame level: every frame of every clip against its target (its own label where the
data has per-frame labels, else its clip's score). Clip level: the clip score by the
engine's rule against the clip's score. Writes ``metrics.csv``, ``report.md`` and
confusion-matrix PNGs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lusviewer.inference import ScoringEngine
from lusviewer.io import ClipError
from lusviewer.model.weights import LoadedModel
from lusviewer.report.aggregate import persistent_risk
from lusviewer.report.csvsafe import safe_dict_writer, safe_writer
from lusviewer.training.data import LabelledClip
from lusviewer.training.metrics import (
    AUC_KEYS,
    bootstrap_by_group,
    classification_metrics,
    confusion,
    ordinal_aucs,
    patient_agreement,
    patient_scores,
)
from lusviewer.wording import count

METRICS = ("accuracy", "macro_f1", "sensitivity", "specificity", "within_one", "qwk")
CI_METRICS = ("accuracy", "macro_f1", "within_one", "qwk")
LEVELS = ("frame", "clip")


@dataclass
class EvalResult:
    model: str
    rule: str
    frame: dict[str, float]
    clip: dict[str, float]
    frame_confusion: np.ndarray
    clip_confusion: np.ndarray
    n_clips: int
    failed: list[str] = field(default_factory=list)
    n_patients: int = 0
    # 95 % intervals by patient bootstrap: ci[level][metric] and, against the baseline,
    # ci[level]["diff_<metric>"] (model minus baseline, paired).
    ci: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    baseline_score: int | None = None
    baseline_source: str = ""
    baseline: dict[str, dict[str, float]] = field(default_factory=dict)
    # Clips whose images are unlike the model's training clips (the card's familiarity
    # limit); empty when the card gives no limit.
    unfamiliar: list[str] = field(default_factory=list)
    familiarity_checked: bool = False
    # Threshold-free, clip level: AUC of telling score >= k clips from the others, from
    # each clip's persistent risk (report.aggregate.persistent_risk); ci["auc"] by patient.
    auc: dict[str, float] = field(default_factory=dict)
    # Every scored clip: path, patient, expert score, clip score, risks of >= 1/2/3, unfamiliar.
    clips: list[dict[str, object]] = field(default_factory=list)
    # Patient level: agreement of each patient's mean clip score (patient_metrics);
    # ci["patient"] by patient bootstrap; baseline["patient"] for always the baseline score.
    patient: dict[str, float] = field(default_factory=dict)


def _cuts(thresholds: tuple[float, ...]) -> str:
    return "/".join(f"{t:.2f}" for t in thresholds)


def evaluate_model(
    loaded: LoadedModel,
    clips: Sequence[LabelledClip],
    *,
    device: str = "auto",
    batch_size: int = 32,
    rule: str = "auto",
    on_clip: Callable[[int, int, str], None] | None = None,
    baseline_score: int | None = None,
    baseline_source: str = "",
    bootstrap_reps: int = 2000,
) -> EvalResult:
    """Score ``clips`` with the engine and compare with their labels. With
    ``baseline_score`` (e.g. the training data's majority score) also the metrics of
    always answering it, and patient-bootstrap intervals of the model's advantage."""
    engine = ScoringEngine(loaded, device=device, batch_size=batch_size, rule=rule)
    ys, ps, cy, cp, failed, groups, unfamiliar, risks = [], [], [], [], [], [], [], []
    rows: list[dict[str, object]] = []
    for i, c in enumerate(clips):
        if on_clip is not None:
            on_clip(i, len(clips), c.path)
        try:
            r = engine.score_clip(c.path)
        except ClipError as exc:
            failed.append(str(exc))
            continue
        ys.append(c.targets(len(r.scores)))
        ps.append(r.scores)
        cy.append(c.score)
        cp.append(r.summary.clip_score)
        risks.append(persistent_risk(r.probs, r.info.fps or 25.0))
        if r.unfamiliar:
            unfamiliar.append(c.path)
        groups.append(c.group)
        rows.append(
            {
                "clip": c.path,
                "patient": c.group,
                "expert_score": c.score,
                "clip_score": r.summary.clip_score,
                **{f"risk_ge{k}": round(float(v), 5) for k, v in enumerate(risks[-1], start=1)},
                "unfamiliar": "" if r.unfamiliar is None else int(r.unfamiliar),
            }
        )
    if not ys:
        raise ValueError("no clip could be scored")
    y, p = np.concatenate(ys), np.concatenate(ps)
    result = EvalResult(
        model=loaded.card.display_name,
        rule=engine.rule if engine.thresholds is None else f"{engine.rule} (thresholds {_cuts(engine.thresholds)})",
        frame=classification_metrics(y, p),
        clip=classification_metrics(cy, cp),
        frame_confusion=confusion(y, p),
        clip_confusion=confusion(cy, cp),
        n_clips=len(cy),
        failed=failed,
        n_patients=len(set(groups)),
        unfamiliar=unfamiliar,
        familiarity_checked=engine.recon_error_limit is not None,
        baseline_score=baseline_score,
        baseline_source=baseline_source,
        auc=ordinal_aucs(cy, np.stack(risks)),
        clips=rows,
    )
    result.patient, patient_ci, patient_base = patient_agreement(
        groups,
        cy,
        cp,
        None if baseline_score is None else [baseline_score] * len(cy),
        reps=bootstrap_reps,
    )
    if patient_base is not None:
        result.baseline["patient"] = patient_base
    if patient_ci:
        result.ci["patient"] = patient_ci
    per_level = {
        "frame": [(t, q) for t, q in zip(ys, ps, strict=True)],
        "clip": [(np.array([t]), np.array([q])) for t, q in zip(cy, cp, strict=True)],
    }
    for level, pairs in per_level.items():
        ref = None
        if baseline_score is not None:
            ref = [np.full_like(t, baseline_score) for t, _ in pairs]
            result.baseline[level] = classification_metrics(np.concatenate([t for t, _ in pairs]), np.concatenate(ref))
        if bootstrap_reps > 0 and result.n_patients > 1:
            result.ci[level] = bootstrap_by_group(groups, pairs, reference=ref, reps=bootstrap_reps, keys=CI_METRICS)
    if bootstrap_reps > 0 and result.n_patients > 1:
        result.ci["auc"] = bootstrap_by_group(
            groups,
            [(np.array([t]), q[None, :]) for t, q in zip(cy, risks, strict=True)],
            reps=bootstrap_reps,
            keys=AUC_KEYS,
            metric=ordinal_aucs,
        )
    return result


def confusion_png(cm: np.ndarray, path: str | os.PathLike[str], title: str) -> Path:
    """A readable confusion matrix (counts and row percentages) drawn with OpenCV."""
    n = cm.shape[0]
    cell, left, top = 110, 120, 100
    img = np.full((top + n * cell + 60, left + n * cell + 20, 3), 255, np.uint8)
    rows = cm.sum(1, keepdims=True).clip(min=1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title, (10, 28), font, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(img, "predicted score", (left + n * cell // 2 - 80, 60), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(n):
        cv2.putText(img, str(i), (left + i * cell + cell // 2 - 6, top - 8), font, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(img, f"true {i}", (10, top + i * cell + cell // 2 + 6), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(n):
            frac = cm[i, j] / rows[i, 0]
            shade = int(255 - 200 * frac)
            x0, y0 = left + j * cell, top + i * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (255, shade, shade), -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (120, 120, 120), 1)
            ink = (255, 255, 255) if frac > 0.6 else (0, 0, 0)
            cv2.putText(img, str(int(cm[i, j])), (x0 + 12, y0 + 45), font, 0.7, ink, 2, cv2.LINE_AA)
            cv2.putText(img, f"{100 * frac:.0f}%", (x0 + 12, y0 + 80), font, 0.55, ink, 1, cv2.LINE_AA)
    path = Path(path)
    cv2.imwrite(str(path), img)
    return path


def write_eval_report(result: EvalResult, out_dir: str | os.PathLike[str], *, command: str = "") -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_tables(result, out)
    confusion_png(result.frame_confusion, out / "confusion_frame.png", f"{result.model}: frames")
    confusion_png(result.clip_confusion, out / "confusion_clip.png", f"{result.model}: clips ({result.rule} rule)")
    lines = [
        f"# Evaluation of {result.model}",
        "",
        f"{count(result.n_clips, 'clip')} scored"
        + (f", {len(result.failed)} could not be read" if result.failed else "")
        + "."
        + (
            ""
            if not result.familiarity_checked
            else " None looks unlike the model's training clips (familiarity check)."
            if not result.unfamiliar
            else f" {len(result.unfamiliar)} of them look unlike the model's training clips (mean reconstruction "
            "error above the card's limit): their scores are unreliable."
        ),
        f"Clip score rule: {result.rule}." + (f" Command: `{command}`" if command else ""),
        "",
        "| level | n | accuracy | macro-F1 | sensitivity | specificity | within-one | QWK |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level, m in (("frame", result.frame), ("clip", result.clip)):
        lines.append(f"| {level} | {int(m['n'])} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS) + " |")
    for level, m in result.baseline.items():
        if level not in LEVELS:
            continue
        lines.append(
            f"| {level}: always score {result.baseline_score} | {int(m['n'])} | "
            + " | ".join(f"{m[k]:.3f}" for k in METRICS)
            + " |"
        )
    lines += [
        "",
        "Macro averages over the four scores (one-vs-rest); within-one: at most one level off; "
        "QWK: quadratic-weighted Cohen's kappa."
        + (f" Baseline: always score {result.baseline_score} ({result.baseline_source})." if result.baseline else ""),
        "",
    ]
    lines += _ci_lines(result)
    lines += _auc_lines(result)
    if result.patient:
        lines += _patient_section(result)
    lines += [
        "![frames](confusion_frame.png) ![clips](confusion_clip.png)",
    ]
    lines += ["", "Could not be read:", *(f"- {f}" for f in result.failed)] if result.failed else []
    lines += ["", "Unlike the training clips:", *(f"- {f}" for f in result.unfamiliar)] if result.unfamiliar else []
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"


def _write_tables(result: EvalResult, out: Path) -> None:
    """metrics.csv, auc.csv, clips.csv, patients.csv and the confusion matrices as CSV."""
    ci_cols = [f"{k}_ci_{end}" for k in CI_METRICS for end in ("lo", "hi")]
    with open(out / "metrics.csv", "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
        w = safe_writer(fh)
        w.writerow(["model", "level", "n", *METRICS, *ci_cols])
        for level, m in (("frame", result.frame), ("clip", result.clip)):
            ci = result.ci.get(level, {})
            cells = [f"{v:.4f}" for k in CI_METRICS for v in ci.get(k, (float("nan"), float("nan")))]
            w.writerow([result.model, level, int(m["n"]), *(f"{m[k]:.4f}" for k in METRICS), *cells])
        for level, m in result.baseline.items():
            if level not in LEVELS:
                continue
            name = f"always score {result.baseline_score}"
            w.writerow([name, level, int(m["n"]), *(f"{m[k]:.4f}" for k in METRICS), *([""] * len(ci_cols))])
    if result.auc:
        with open(out / "auc.csv", "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
            w = safe_writer(fh)
            w.writerow(["model", "level", "positive", "n", "auc", "ci_lo", "ci_hi"])
            for k, key in enumerate(AUC_KEYS, start=1):
                lo, hi = result.ci.get("auc", {}).get(key, (float("nan"), float("nan")))
                w.writerow(
                    [result.model, "clip", f"score >= {k}", result.n_clips]
                    + [f"{v:.4f}" for v in (result.auc[key], lo, hi)]
                )
    if result.clips:
        with open(out / "clips.csv", "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
            dw = safe_dict_writer(fh, list(result.clips[0]))
            dw.writeheader()
            dw.writerows(result.clips)
        names, n, expert_mean, model_mean = patient_scores(
            [str(r["patient"]) for r in result.clips],
            [int(str(r["expert_score"])) for r in result.clips],
            [int(str(r["clip_score"])) for r in result.clips],
        )
        with open(out / "patients.csv", "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
            w = safe_writer(fh)
            w.writerow(["patient", "clips", "expert_mean_score", "model_mean_score"])
            for name, count, e, m in zip(names, n, expert_mean, model_mean, strict=True):
                w.writerow([name, int(count), f"{e:.4f}", f"{m:.4f}"])
    for level, cm in (("frame", result.frame_confusion), ("clip", result.clip_confusion)):
        np.savetxt(
            out / f"confusion_{level}.csv", cm, fmt="%d", delimiter=",", header="rows: true 0-3, columns: predicted 0-3"
        )


def _ci_lines(result: EvalResult) -> list[str]:
    """The report's table of 95 % patient-bootstrap intervals (none without intervals)."""
    if not result.ci:
        return []
    lines = [
        f"95 % intervals by resampling the {result.n_patients} patients (bootstrap; clips of one patient "
        "are not independent):",
        "",
        "| level | " + " | ".join(k.replace("_", "-") for k in CI_METRICS) + " |",
        "|---|" + "---|" * len(CI_METRICS),
    ]
    for level in LEVELS:
        ci = result.ci.get(level, {})
        if ci:
            row = " | ".join(f"{ci[k][0]:.3f} to {ci[k][1]:.3f}" for k in CI_METRICS)
            lines.append(f"| {level} | {row} |")
        if f"diff_{CI_METRICS[0]}" in ci:
            lines.append(
                f"| {level}: model minus baseline | "
                + " | ".join(f"{ci['diff_' + k][0]:+.3f} to {ci['diff_' + k][1]:+.3f}" for k in CI_METRICS)
                + " |"
            )
    lines.append("")
    return lines


def _auc_lines(result: EvalResult) -> list[str]:
    """The report's threshold-free clip-level AUCs (none where the result has none)."""
    if not result.auc:
        return []
    auc_ci = result.ci.get("auc", {})

    def cell(key: str) -> str:
        v = result.auc[key]
        if not np.isfinite(v):
            return "n/a (one kind only)"
        lo, hi = auc_ci.get(key, (float("nan"), float("nan")))
        return f"{v:.3f}" + (f" ({lo:.3f} to {hi:.3f})" if np.isfinite(lo) else "")

    return [
        "Threshold-free, clip level: area under the ROC curve for telling clips of score >= k from the "
        "others, from each clip's risk of a score >= k (the frames' probability of it, averaged over "
        "0.2 s runs, at its highest); 0.5 is chance"
        + (", 95 % intervals by resampling patients" if auc_ci else "")
        + ":",
        "",
        "| score >= 1 | score >= 2 | score >= 3 |",
        "|---|---|---|",
        "| " + " | ".join(cell(k) for k in AUC_KEYS) + " |",
        "",
    ]


def _patient_section(result: EvalResult) -> list[str]:
    ci = result.ci.get("patient", {})

    def cell(m: dict[str, float], key: str, with_ci: bool) -> str:
        if not np.isfinite(m[key]):
            return "n/a (constant)"
        lo, hi = ci.get(key, (float("nan"), float("nan"))) if with_ci else (float("nan"), float("nan"))
        return f"{m[key]:.3f}" + (f" ({lo:.3f} to {hi:.3f})" if np.isfinite(lo) else "")

    diff = "—"
    if "patient" in result.baseline and "diff_mae" in ci:
        lo, hi = ci["diff_mae"]
        diff = f"{result.patient['mae'] - result.baseline['patient']['mae']:+.3f} ({lo:+.3f} to {hi:+.3f})"
    lines = [
        "Patient level: each patient's mean clip score (the LUS total score divided by the number of zones "
        "scanned) by the expert and by the model; mean absolute difference in score levels and Spearman's rank "
        "correlation"
        + (", 95 % intervals by resampling patients" if ci else "")
        + (
            "; against always answering the baseline score, the paired difference in mean absolute difference"
            if diff != "—"
            else ""
        )
        + ". Per patient in "
        "[patients.csv](patients.csv), per clip in [clips.csv](clips.csv).",
        "",
        "| | patients | mean absolute difference | minus the baseline's | Spearman ρ |",
        "|---|---|---|---|---|",
        f"| model | {int(result.patient['n'])} | {cell(result.patient, 'mae', True)} | {diff} | "
        f"{cell(result.patient, 'spearman', True)} |",
    ]
    if "patient" in result.baseline:
        b = result.baseline["patient"]
        lines.append(
            f"| always score {result.baseline_score} | {int(b['n'])} | {cell(b, 'mae', False)} | — | "
            f"{cell(b, 'spearman', False)} |"
        )
    return [*lines, ""]
