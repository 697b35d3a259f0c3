"""Calibrate a model from its recipe's cross-validation: temperature scaling fitted on
the out-of-fold frames, checked on patients it was not fitted on.

Every test frame of a ``lusviewer crossval`` run keeps its class probabilities
(``oof_probs.npz``) and its clip's expert score (``result.json``): frames of models that
never saw their patient. The temperature is fitted on all of them (every repeat); the
expected calibration error (ECE) is reported before, and after with a temperature
fitted on the *other* half of the patients (two-fold, by patient), so the "after"
number is not measured on what it was fitted to.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lusviewer.training.calibration import expected_calibration_error, fit_temperature, softmax


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold frames of one recipe: log-probabilities (N, C), targets (N,), patient (N,)."""

    logp: np.ndarray
    targets: np.ndarray
    patients: np.ndarray
    clips: int
    runs: int


def load_out_of_fold(cv_dir: str | Path, variant: str) -> OutOfFold:
    """The frames of every ``[rep<r>/]fold<i>/<variant>`` of a cross-validation folder."""
    root = Path(cv_dir)
    runs = sorted(root.glob(f"fold*/{variant}")) + sorted(root.glob(f"rep*/fold*/{variant}"))
    logp, targets, patients, clips, used = [], [], [], 0, 0
    for run in runs:
        result, probs = run / "result.json", run / "oof_probs.npz"
        if not (result.is_file() and probs.is_file()):
            continue
        rec = json.loads(result.read_text())
        with np.load(probs, allow_pickle=False) as npz:
            for c in rec["clips"]:
                p = np.asarray(npz[Path(c["clip"]).name], dtype=np.float64)
                logp.append(np.log(np.clip(p, 1e-7, 1.0)))
                targets.append(np.full(len(p), int(c["score"])))
                patients.append(np.full(len(p), str(c["group"]), dtype=object))
                clips += 1
        used += 1
    if not used:
        raise ValueError(f"{root}: no fold of variant {variant!r} with out-of-fold probabilities (oof_probs.npz)")
    return OutOfFold(np.concatenate(logp), np.concatenate(targets), np.concatenate(patients), clips, used)


def calibrate(oof: OutOfFold, *, seed: int = 0) -> dict[str, float]:
    """Temperature fitted on every out-of-fold frame, and the ECE before and after (the
    latter two-fold cross-fitted by patient)."""
    t_all = fit_temperature(oof.logp, oof.targets)
    names = np.array(sorted(set(oof.patients)), dtype=object)
    rng = np.random.default_rng(seed)
    half = set(rng.permutation(names)[: len(names) // 2])
    a = np.array([p in half for p in oof.patients])
    after = np.empty_like(oof.logp)
    for fit, apply in ((a, ~a), (~a, a)):
        t = fit_temperature(oof.logp[fit], oof.targets[fit])
        after[apply] = softmax(oof.logp[apply], t)
    before = softmax(oof.logp, 1.0)
    return {
        "temperature": round(t_all, 4),
        "ece_before": round(expected_calibration_error(before, oof.targets), 4),
        "ece_after": round(expected_calibration_error(after, oof.targets), 4),
        "frames": float(len(oof.targets)),
        "log_t": math.log(t_all),
    }
