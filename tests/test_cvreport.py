"""Repeated patient-grouped cross-validation and the paired report (issue 15)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import _tiny_config, blues_like_folder

from lusviewer.training.cvreport import (
    ALWAYS,
    ORACLE,
    Table,
    compare,
    load_recipes,
    metrics,
    write_repeated_report,
)
from lusviewer.training.losses import coral_loss, sord_loss, sord_targets


@pytest.fixture(scope="module")
def two_recipes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny recipes (compact; cross-entropy vs CORAL + sector + aux heads), 2 folds x 2 repeats."""
    from lusviewer.training.crossval import run_crossval

    tmp = tmp_path_factory.mktemp("cv")
    data = blues_like_folder(tmp / "blues")
    outs = []
    for name, extra in (("ce", {}), ("coral", {"loss": "coral", "crop": "sector", "aux_weight": 0.5})):
        cfg = replace(_tiny_config(data, tmp, cnn_epochs=1, **extra), out=str(tmp / name), cache_dir=str(tmp / "cache"))
        report = run_crossval(cfg, k=2, variants=("compact",), repeats=2)
        assert report == tmp / name / "report.md"
        outs.append(tmp / name)
    return outs[0], outs[1]


def test_repeats_test_every_clip_once_per_repeat_on_the_same_folds(two_recipes: tuple[Path, Path]) -> None:
    ce, coral = two_recipes
    for out in (ce, coral):
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["rep0", "rep1"]
        for rep in (0, 1):
            clips = []
            for fold in (0, 1):
                rec = json.loads((out / f"rep{rep}" / f"fold{fold}" / "compact" / "result.json").read_text())
                assert rec["repeat"] == rep
                clips += [Path(c["clip"]).name for c in rec["clips"]]
                assert all(len(c["p_mean"]) == 4 for c in rec["clips"])
                probs = np.load(out / f"rep{rep}" / f"fold{fold}" / "compact" / "oof_probs.npz")
                assert sorted(probs.files) == sorted(Path(c["clip"]).name for c in rec["clips"])
            assert sorted(clips) == sorted(set(clips)) and len(clips) == 16
    a, b = load_recipes([ce, coral])
    # repeat r splits with seed + 1000 r; both recipes on the same folds
    from lusviewer.training.data import group_kfold, load_covid_blues

    clips = load_covid_blues(ce.parent / "blues")
    for rep in (0, 1):
        want = {
            Path(c.path).name: f for f, (_, test) in enumerate(group_kfold(clips, k=2, seed=1000 * rep)) for c in test
        }
        assert {c: r["fold"] for c, r in a.repeats[rep].items()} == want
        assert {c: r["fold"] for c, r in b.repeats[rep].items()} == want
    aux = json.loads((coral / "rep0" / "fold0" / "compact" / "result.json").read_text())["clips"][0]
    assert len(aux["aux"]) == 2 and aux["findings"] == [1, 1]
    text = (ce / "report.md").read_text()
    assert "always 0" in text and ORACLE in text and "QWK" in text


def test_report_compares_recipes_paired(two_recipes: tuple[Path, Path], tmp_path: Path) -> None:
    ce, coral = two_recipes
    path = write_repeated_report([ce, coral], tmp_path / "cmp.md", reps=200)
    text = path.read_text()
    assert "ce:compact" in text and "coral:compact" in text
    assert "recipe minus **ce:compact**" in text and "recipe minus **always 0**" in text
    assert (tmp_path / "cmp.csv").read_text().startswith("recipe,")


def test_unpaired_recipes_are_refused(two_recipes: tuple[Path, Path], tmp_path: Path) -> None:
    ce, _ = two_recipes
    import shutil

    other = tmp_path / "other"
    shutil.copytree(ce, other)
    f = other / "rep1" / "fold0" / "compact" / "result.json"
    rec = json.loads(f.read_text())
    rec["clips"] = rec["clips"][1:]
    f.write_text(json.dumps(rec))
    with pytest.raises(ValueError, match="not tested on the same folds"):
        compare(load_recipes([ce, other]), reps=10)


def test_metrics_and_references_on_known_answers() -> None:
    score = np.array([0, 0, 1, 2, 3, 3])
    patient = np.array([0, 0, 1, 1, 2, 2])
    risk = np.stack([(score >= k).astype(float) for k in (1, 2, 3)], 1)
    perfect = metrics(Table([str(i) for i in range(6)], patient, score, score.copy(), risk))
    assert perfect["qwk"] == pytest.approx(1.0) and perfect["mae"] == 0 and perfect["auc_ge2"] == 1.0
    assert perfect["lus_spearman"] == pytest.approx(1.0)
    zero = metrics(Table([str(i) for i in range(6)], patient, score, np.zeros(6, int), np.zeros((6, 3))))
    assert zero["qwk"] == 0 and zero["mae"] == pytest.approx(9 / 6) and zero["auc_ge1"] == 0.5
    assert np.isnan(zero["lus_spearman"])  # a constant answer ranks no patient
    assert ALWAYS == ("always 0", "always 1")


def test_sord_and_coral_losses() -> None:
    q = sord_targets(torch.tensor([0, 3]), 4, alpha=1.0)
    torch.testing.assert_close(q.sum(1), torch.ones(2))
    assert q[0].argmax() == 0 and q[1].argmax() == 3 and q[0, 1] > q[0, 2] > q[0, 3]
    w = torch.ones(4)
    good = torch.tensor([[5.0, 1.0, -3.0, -8.0]])
    bad = good.flip(1)
    assert sord_loss(good, torch.tensor([0]), w) < sord_loss(bad, torch.tensor([0]), w)
    # CORAL: P(>=k) logits; score 2 wants (+, +, -)
    right, wrong = torch.tensor([[4.0, 4.0, -4.0]]), torch.tensor([[-4.0, -4.0, 4.0]])
    assert coral_loss(right, torch.tensor([2]), w) < 0.1 < coral_loss(wrong, torch.tensor([2]), w)


def test_training_on_every_patient_keeps_the_last_epoch(tmp_path: Path) -> None:
    """--val-fraction 0 (the model to ship after a cross-validation): every patient trains,
    the fixed number of epochs runs, the card names no validation patient, and evaluate
    --card-val-patients says why it has nothing to evaluate, in one line."""
    import subprocess
    import sys

    from lusviewer.model import load_model
    from lusviewer.training.train import run_training

    data = blues_like_folder(tmp_path / "blues")
    cfg = replace(_tiny_config(data, tmp_path, val_fraction=0.0, cnn_epochs=2), variant="compact", crop="sector")
    card_path = run_training(cfg)
    loaded = load_model(card_path)
    card = loaded.card
    assert card.training["split"]["val_patients"] == [] and len(card.training["split"]["train_patients"]) == 8
    assert card.training["epochs"]["cnn"] == 2
    assert card.preprocessing["crop"] == "sector"
    assert loaded.model.cfg.variant == "compact"
    with pytest.raises(ValueError, match="--val-fraction 0"):
        run_training(replace(cfg, out=str(tmp_path / "o2"), work_dir=str(tmp_path / "w2"), pretrain_epochs=1))
    run = subprocess.run(
        [sys.executable, "-m", "lusviewer", "evaluate", "--data", str(data), "--model", str(card_path),
         "--card-val-patients", "-o", str(tmp_path / "eval"), "-q"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode != 0
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "trained on every patient" in lines[0], run.stderr


def test_calibrate_from_the_cross_validation(two_recipes: tuple[Path, Path], tmp_path: Path) -> None:
    """The temperature is fitted on the recipe's out-of-fold frames and bound into the card."""
    import subprocess
    import sys

    from lusviewer.model import load_model
    from lusviewer.training.calibrate_cv import calibrate, load_out_of_fold
    from lusviewer.training.train import run_training

    ce, _ = two_recipes
    oof = load_out_of_fold(ce, "compact")
    assert oof.runs == 4 and oof.clips == 32 and len(oof.targets) == len(oof.logp) == 320  # 16 clips x 10 frames x 2
    r = calibrate(oof)
    assert 0.05 <= r["temperature"] <= 20 and 0 <= r["ece_after"] <= 1
    card = run_training(replace(_tiny_config(ce.parent / "blues", tmp_path, val_fraction=0.0), variant="compact"))
    run = subprocess.run(
        [sys.executable, "-m", "lusviewer", "calibrate", "--cv", str(ce), "--model", str(card), "--write-card",
         "--clip-rule"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    loaded = load_model(card)  # the re-bound weights still verify
    assert loaded.card.inference["temperature"] == pytest.approx(r["temperature"])
    assert "ECE" in loaded.card.inference["calibration_check"]
    assert loaded.card.metrics["calibration"]["ece_before"] == r["ece_before"]
    # the expected rule's thresholds, fitted by prevalence at that temperature, are the card's clip rule
    from lusviewer.training.cliprule import card_rule

    assert loaded.card.clip_rule == ("expected", tuple(card_rule(ce, "compact", r["temperature"])["thresholds"]))  # type: ignore[arg-type]
    assert "by prevalence" in loaded.card.inference["clip_rule_check"]
    assert "no validation split" in loaded.card.metrics["note"]  # not "mildly optimistic": it has no held-out numbers
    bad = subprocess.run(
        [sys.executable, "-m", "lusviewer", "calibrate", "--cv", str(tmp_path), "--model", str(card)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "no fold of variant 'compact'" in bad.stderr


def test_report_cli_says_what_is_wrong_in_one_line(two_recipes: tuple[Path, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    ce, _ = two_recipes
    cases = [
        ([str(tmp_path / "none")], "no fold results"),
        ([str(ce), "--reference", "nope"], "--reference 'nope': not one of"),
        ([str(ce), "--repeats-only", "x"], "--repeats-only 'x': 'x' is not a whole number; expected repeat numbers"),
        ([str(ce), "--repeats-only", "5"], "no results of repeat(s) [5]"),
        ([str(ce), "-o", str(tmp_path / "missing" / "dir" / "r.md"), "--bootstrap", "100"], None),
        ([str(ce), "-o", "/proc/no/r.md", "--bootstrap", "100"], "cannot write the report"),
    ]
    for argv, says in cases:
        run = subprocess.run(
            [sys.executable, "-m", "lusviewer", "crossval-report", *argv], capture_output=True, text=True, timeout=300
        )
        if says is None:  # a folder that does not exist yet is made
            assert run.returncode == 0, run.stderr
            continue
        lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
        assert run.returncode == 2 and len(lines) == 1 and says in lines[0], run.stderr


def test_a_run_with_some_repeats_done_pairs_on_the_repeats_it_shares(
    two_recipes: tuple[Path, Path], tmp_path: Path
) -> None:
    """A long run that has finished repeat 0 and one fold of repeat 1 is compared on
    repeat 0 with the finished runs (``--repeats-only 0``); without it, it is refused."""
    import shutil

    ce, coral = two_recipes
    partial = tmp_path / "partial"
    shutil.copytree(coral, partial)
    shutil.rmtree(partial / "rep1" / "fold1")
    with pytest.raises(ValueError, match="not tested on the same folds"):
        compare(load_recipes([ce, partial]), reps=10)
    with pytest.raises(ValueError, match="one fold only"):  # repeat 1's nested thresholds need its other folds
        load_recipes([f"{partial}@expected"])
    a, b = load_recipes([ce, f"{partial}@expected"], repeats=[0])
    assert sorted(a.repeats) == sorted(b.repeats) == [0] and a.folds == b.folds == 2
    full = load_recipes([f"{coral}@expected"])[0]
    assert {c: r["pred"] for c, r in b.repeats[0].items()} == {c: r["pred"] for c, r in full.repeats[0].items()}
    text = write_repeated_report([ce, f"{partial}@expected"], tmp_path / "r.md", reps=100, repeats=[0]).read_text()
    assert "Only repeat 0 of each recipe" in text and "95 % intervals: 100 resamples of the patients" in text
    assert "partial:compact@expected" in text
    with pytest.raises(ValueError, match=r"no results of repeat\(s\) \[2\]"):
        load_recipes([ce], repeats=[2])


def test_a_subset_of_patients_is_scored_as_in_the_whole_cross_validation(
    two_recipes: tuple[Path, Path], tmp_path: Path
) -> None:
    """``--patients``: another model's validation patients, say; their clips keep the
    scores the nested rule gave them in the whole run (thresholds fitted on every fold)."""
    _, coral = two_recipes
    full = load_recipes([f"{coral}@expected"])[0]
    groups = sorted({str(r["group"]) for r in full.repeats[0].values()})
    some = groups[: len(groups) // 2]
    sub = load_recipes([f"{coral}@expected"], patients=some)[0]
    for rep in (0, 1):
        want = {c: r["pred"] for c, r in full.repeats[rep].items() if str(r["group"]) in some}
        assert want and {c: r["pred"] for c, r in sub.repeats[rep].items()} == want
    text = write_repeated_report([f"{coral}@expected"], tmp_path / "s.md", reps=100, patients=some).read_text()
    assert f"Only the clips of {len(some)} patients" in text and f"of {len(some)} patients, each tested" in text
    with pytest.raises(ValueError, match="none of the patients asked for"):
        load_recipes([coral], patients=["nobody"])


def test_a_fold_cut_short_by_the_clock_is_recorded_and_the_report_warns(
    two_recipes: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stage 1 budget of 6 ms with 3 epochs: one epoch runs, then the clock stops it.
    The run records it (``stopped_by``), says so in one line, and crossval-report warns
    that those folds trained less than their recipe; complete runs draw no warning."""
    from lusviewer.training.crossval import run_crossval

    ce, _ = two_recipes
    cfg = replace(
        _tiny_config(ce.parent / "blues", tmp_path, cnn_epochs=3, cnn_minutes=1e-4),
        out=str(tmp_path / "short"),
        cache_dir=str(ce.parent / "cache"),
    )
    run_crossval(cfg, k=2, variants=("compact",), repeats=1)
    state = json.loads((tmp_path / "short" / "fold0" / "compact" / "state.json").read_text())
    assert state["cnn"]["epoch"] == 1 and state["cnn"]["stopped_by"] == "budget"
    assert "warning: stage 1 (CNN) stopped by its 0.0001-minute budget after 1 of 3 epochs" in capsys.readouterr().out
    text = write_repeated_report([tmp_path / "short"], tmp_path / "r.md", reps=100).read_text()
    assert "training cut short by the clock" in text
    assert "`short:compact` repeat 0 fold 0, stage 1 (CNN): 1 of 3 epochs" in text
    assert "repeat 0 fold 1, stage 1 (CNN): 1 of 3 epochs" in text
    assert "cut short" not in write_repeated_report([ce], tmp_path / "ce.md", reps=100).read_text()


def test_runs_from_before_the_stop_was_recorded_are_judged_by_their_clock(
    two_recipes: tuple[Path, Path], tmp_path: Path
) -> None:
    """Older state.json files carry no ``stopped_by``: stage 1 short of its epochs with
    its budget spent, or stage 2 short of its epochs without validation, was the clock;
    stage 1 short of its epochs within its budget was early stopping."""
    from lusviewer.training.cvreport import clock_stops

    ce, _ = two_recipes
    result = ce / "rep0" / "fold0" / "compact" / "result.json"
    state = json.loads(result.with_name("state.json").read_text())
    state["config"].update(cnn_epochs=12, cnn_minutes=60.0, lstm_epochs=4, val_fraction=0.0)
    state["cnn"] = {"epoch": 2, "elapsed_s": 3700.0, "done": True}
    state["lstm"] = {"epoch": 3, "done": True}
    old = tmp_path
    (old / "state.json").write_text(json.dumps(state))
    assert clock_stops(old / "result.json") == ["stage 1 (CNN): 2 of 12 epochs", "stage 2 (LSTM): 3 of 4 epochs"]
    state["cnn"]["elapsed_s"] = 600.0
    state["config"]["val_fraction"] = 0.2
    (old / "state.json").write_text(json.dumps(state))
    assert clock_stops(old / "result.json") == []
