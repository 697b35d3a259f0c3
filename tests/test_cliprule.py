"""The expected clip rule, its thresholds fitted by prevalence, nested in a cross-validation,
carried by a model card and applied by the engine (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_model

from lusviewer.model import ModelError, load_model
from lusviewer.model.weights import record_in_card
from lusviewer.report.aggregate import ROUNDING, check_thresholds, summarize_clip
from lusviewer.training.cliprule import (
    calibrated_mean,
    card_rule,
    cut,
    nested_predictions,
    prevalence_thresholds,
)
from lusviewer.training.cvreport import load_recipes, parse_spec


def _probs(mean_severity: float, n: int = 20) -> np.ndarray:
    """Frames whose probabilities put the clip's expected severity at ``mean_severity``."""
    lo = int(np.floor(mean_severity))
    hi = min(lo + 1, 3)
    p = np.zeros((n, 4))
    w = mean_severity - lo
    p[:, lo] += 1 - w
    p[:, hi] += w
    return p


def test_expected_rule_rounds_by_default_and_cuts_at_given_thresholds() -> None:
    p = _probs(1.7)
    s = summarize_clip(p.argmax(1), p, rule="expected")
    assert s.clip_score == 2 and "1.70, rounded" in s.rule
    assert summarize_clip(p.argmax(1), p, rule="expected", thresholds=(0.3, 0.9, 1.6)).clip_score == 3
    assert summarize_clip(p.argmax(1), p, rule="expected", thresholds=(1.8, 2.0, 2.5)).clip_score == 0
    # the persistent rule on the same frames (every frame's argmax is 2) says 2 too
    assert summarize_clip(p.argmax(1), p).clip_score == 2
    with pytest.raises(ValueError, match="needs the frames' probabilities"):
        summarize_clip(p.argmax(1), None, rule="expected")


@pytest.mark.parametrize(
    ("thresholds", "match"),
    [((0.5, 1.5), "need 3"), ((0.5, 0.5, 2.0), "strictly increasing"), ((0.0, 1.0, 2.0), "outside"),
     ((0.5, 1.5, 3.0), "outside"), ((0.5, float("nan"), 2.0), "not finite")],
)  # fmt: skip
def test_thresholds_that_cannot_cut_a_severity_are_refused(thresholds: tuple[float, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_thresholds(thresholds)
    assert check_thresholds(ROUNDING) == ROUNDING


def test_prevalence_thresholds_give_each_score_the_experts_share() -> None:
    rng = np.random.default_rng(0)
    y = rng.choice(4, 2000, p=[0.35, 0.3, 0.22, 0.13])
    x = y * 0.4 + rng.normal(0, 0.5, len(y)) + 1.0  # a noisy severity, not on the 0..3 scale
    t = prevalence_thresholds(x, y)
    pred = cut(x, t)
    assert np.allclose(np.bincount(pred, minlength=4) / len(y), np.bincount(y, minlength=4) / len(y), atol=0.002)
    assert list(t) == sorted(t) and t[0] > 0 and t[-1] < 3


def test_prevalence_thresholds_stay_valid_where_a_score_is_absent() -> None:
    x = np.linspace(0.2, 0.4, 50)
    t = prevalence_thresholds(x, np.zeros(50, np.int64))  # every expert score 0
    check_thresholds(t)  # strictly increasing, inside 0..3: every score still reachable
    assert (cut(x, t) <= 1).all()


def test_temperature_scaling_of_saved_probabilities_equals_scaling_the_logits() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (30, 4))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    t = 3.0
    q = np.exp(logits / t) / np.exp(logits / t).sum(1, keepdims=True)
    assert np.allclose(calibrated_mean(p, t), q.mean(0), atol=1e-9)
    assert np.allclose(calibrated_mean(p), p.mean(0))


def _fake_cv(root: Path, labels: dict[int, list[int]], sev: dict[int, list[float]], repeats: int = 2) -> None:
    """A cross-validation folder as `lusviewer crossval` writes it: rep<r>/fold<f>/compact/
    result.json + oof_probs.npz, every clip's frames putting it at the given severity."""
    for r in range(repeats):
        for f, ys in labels.items():
            run = root / f"rep{r}" / f"fold{f}" / "compact"
            run.mkdir(parents=True)
            clips, frames = [], {}
            for i, (y, s) in enumerate(zip(ys, sev[f], strict=True)):
                name = f"patient_{f}{i}_R1.mp4"
                p = _probs(s)
                frames[name] = p.astype(np.float16)
                risk = [float((p.mean(0)[k:]).sum()) for k in (1, 2, 3)]
                clips.append({"clip": f"v/{name}", "group": f"{f}{i}", "score": y, "pred": 3, "risk": risk,
                              "p_mean": p.mean(0).tolist()})  # fmt: skip
            np.savez(run / "oof_probs.npz", **frames)
            (run / "result.json").write_text(json.dumps({"fold": f, "variant": "compact", "repeat": r, "clips": clips}))


def test_nested_thresholds_never_see_the_fold_they_score(tmp_path: Path) -> None:
    sev = {f: list(np.linspace(0.1, 2.9, 12) + 0.01 * f) for f in range(3)}
    labels = {f: [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3] for f in range(3)}
    _fake_cv(tmp_path / "a", labels, sev)
    changed = {**labels, 0: [3] * 12}  # fold 0's labels changed: its own scores must not move
    _fake_cv(tmp_path / "b", changed, sev)
    a, b = nested_predictions(tmp_path / "a"), nested_predictions(tmp_path / "b")
    fold0 = [f"patient_0{i}_R1.mp4" for i in range(12)]
    assert [a[0][c] for c in fold0] == [b[0][c] for c in fold0]
    # but the other folds' thresholds saw fold 0's labels, and move
    assert [a[0][c] for c in a[0] if c not in fold0] != [b[0][c] for c in b[0] if c not in fold0]
    # the shipped model's thresholds use every clip of every repeat
    rule = card_rule(tmp_path / "a")
    assert rule["rule"] == "expected" and "72 out-of-fold clip predictions" in str(rule["fitted"])
    check_thresholds(rule["thresholds"])  # type: ignore[arg-type]


def test_nested_temperature_is_fitted_without_the_fold_it_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``@expected:nested``: each fold's clips at the temperature fitted on the other folds'
    frames: changing a fold's labels (which moves every fitted temperature that sees them)
    leaves that fold's own scores where they were."""
    from lusviewer.training.calibration import fit_temperature

    sev = {f: list(np.linspace(0.1, 2.9, 12) + 0.01 * f) for f in range(3)}
    labels = {f: [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3] for f in range(3)}
    _fake_cv(tmp_path / "a", labels, sev)
    changed = {**labels, 0: [3, 0] * 6}  # fold 0's labels shuffled: a temperature fitted on them moves
    _fake_cv(tmp_path / "b", changed, sev)
    a, b = nested_predictions(tmp_path / "a", temperature=None), nested_predictions(tmp_path / "b", temperature=None)
    fold0 = [f"patient_0{i}_R1.mp4" for i in range(12)]
    assert [a[0][c] for c in fold0] == [b[0][c] for c in fold0]
    # against a hand-made nesting of fold 0 of repeat 0: temperature and thresholds from folds 1 and 2
    probs = {f: [_probs(s).astype(np.float16).astype(np.float64) for s in sev[f]] for f in range(3)}
    other = [p for f in (1, 2) for p in probs[f]]
    y_other = np.array(labels[1] + labels[2])
    logp = np.log(np.clip(np.concatenate(other), 1e-7, 1))
    t = fit_temperature(logp, np.concatenate([np.full(len(p), y) for p, y in zip(other, y_other, strict=True)]))
    assert not np.isclose(t, 1.0)  # the test means something only if the temperature is not 1
    x_other = np.array([calibrated_mean(p, t) @ np.arange(4) for p in other])
    x0 = np.array([calibrated_mean(p, t) @ np.arange(4) for p in probs[0]])
    want = cut(x0, prevalence_thresholds(x_other, y_other))
    assert [a[0][c] for c in fold0] == want.tolist()
    # what each fold's temperature is fitted on: the other folds' clips, never its own
    from lusviewer.training import cliprule

    seen: list[list[int]] = []
    real = cliprule._nested_temperature
    monkeypatch.setattr(
        cliprule, "_nested_temperature", lambda p, y: seen.append(sorted(np.asarray(y).tolist())) or real(p, y)
    )
    nested_predictions(tmp_path / "b", temperature=None, repeats=[0])
    assert seen == [sorted(labels[1] + labels[2]), sorted(changed[0] + labels[2]), sorted(changed[0] + labels[1])]
    recipe = load_recipes([f"{tmp_path / 'a'}@expected:nested"])[0]
    assert recipe.name == "a:compact@expected:nested"
    assert {c: r["pred"] for c, r in recipe.repeats[1].items()} == a[1]


def test_report_scores_a_recipe_by_the_nested_expected_rule(tmp_path: Path) -> None:
    sev = {f: list(np.linspace(0.1, 2.9, 12)) for f in range(3)}
    labels = {f: [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3] for f in range(3)}
    _fake_cv(tmp_path / "cv", labels, sev)
    plain, refit = load_recipes([tmp_path / "cv", f"{tmp_path / 'cv'}@expected:2"])
    assert plain.name == "cv:compact" and refit.name == "cv:compact@expected:2"
    assert {int(str(r["pred"])) for r in plain.repeats[0].values()} == {3}  # as saved
    preds = [int(str(r["pred"])) for r in refit.repeats[0].values()]
    scores = [int(str(r["score"])) for r in refit.repeats[0].values()]
    assert sorted(set(preds)) == [0, 1, 2, 3]
    assert np.mean(np.array(preds) == np.array(scores)) > 0.8  # the severity orders the clips as the labels do
    for spec, match in ((f"{tmp_path}@worst", "unknown clip rule"), (f"{tmp_path}@expected:x", "neither a number"),
                        (f"{tmp_path}@expected:-1", "above 0")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            parse_spec(spec)


def test_card_clip_rule_is_checked_and_applied_by_the_engine(tmp_path: Path, synthetic_clip: Path) -> None:
    from lusviewer.inference import ScoringEngine

    card_path = make_tiny_model(tmp_path)
    engine = ScoringEngine(load_model(card_path), device="cpu", precision="fp32")
    assert engine.rule == "persistent" and engine.thresholds is None  # no rule in the card
    with pytest.raises(ModelError, match="clip_rule"):
        record_in_card(card_path, "inference", {"clip_rule": {"rule": "expected", "thresholds": [1.0, 0.5, 2.0]}})
    record_in_card(card_path, "inference", {"clip_rule": {"rule": "expected", "thresholds": [0.01, 0.02, 0.03]}})
    loaded = load_model(card_path)  # re-bound: the weights still verify
    engine = ScoringEngine(loaded, device="cpu", precision="fp32")
    assert engine.rule == "expected" and engine.thresholds == (0.01, 0.02, 0.03)
    result = engine.score_clip(str(synthetic_clip))
    severity = float(result.probs.mean(0) @ np.arange(4))
    assert result.summary.clip_score == int(sum(severity >= t for t in (0.01, 0.02, 0.03)))
    assert "fitted in cross-validation" in result.summary.rule
    # a rule asked for by name wins over the card's
    assert ScoringEngine(loaded, device="cpu", precision="fp32", rule="persistent").rule == "persistent"
    # a hand edit of the bound rule is refused at load
    data = json.loads(card_path.read_text())
    data["inference"]["clip_rule"]["thresholds"] = [0.5, 1.5, 2.5]
    card_path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="clip_rule"):
        load_model(card_path)


def test_model_layer_knows_the_report_layers_rules() -> None:
    """model/ does not import report/ (layers): its copy of the rule names must not drift."""
    from lusviewer.model.weights import CLIP_RULES
    from lusviewer.report.aggregate import RULES

    assert CLIP_RULES == RULES


def test_frames_are_scored_as_the_clip_rule_reads_them() -> None:
    """Under the expected rule a frame's score is its expected severity cut at the rule's
    thresholds: with flat (calibrated) probabilities the most probable score of every frame
    can be 3 while the clip's mean severity is cut to 1 (seen in the viewer: a timeline all
    3s beside "Score 1"). Cut alike, a clip whose frames all score s is scored s."""
    from lusviewer.report.aggregate import frame_scores

    flat = np.tile([0.24, 0.25, 0.25, 0.26], (30, 1))  # argmax 3, expected severity 1.53
    t = (1.46, 1.63, 1.72)
    assert (frame_scores(flat) == 3).all()  # the persistent rule reads the most probable score
    s = frame_scores(flat, "expected", t)
    assert (s == 1).all()
    assert summarize_clip(s, flat, rule="expected", thresholds=t).clip_score == 1
    rng = np.random.default_rng(2)
    for _ in range(50):  # whatever the frames, if they all score the same, so does the clip
        p = rng.dirichlet(np.ones(4) * 20, size=25)
        s = frame_scores(p, "expected", t)
        if len(set(s.tolist())) == 1:
            assert summarize_clip(s, p, rule="expected", thresholds=t).clip_score == s[0]
    assert frame_scores(np.zeros((0, 4)), "expected", t).shape == (0,)
