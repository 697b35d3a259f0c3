from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lusviewer.io.synthetic import synthetic_frames, write_video
from lusviewer.model import load_model
from lusviewer.resources import resource_path
from lusviewer.training.data import augment, load_covid_blues, split_by_group
from lusviewer.training.loop import load_optim, save_optim
from lusviewer.training.train import TrainConfig, run_training


@pytest.fixture(scope="module")
def blues_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return blues_like_folder(tmp_path_factory.mktemp("blues"))


def blues_like_folder(root: Path) -> Path:
    """A COVID-BLUeS-shaped folder: 8 patients x 2 clips, synthetic frames."""
    (root / "videos").mkdir(parents=True)
    with open(root / "severity.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video_file", "Severity Score", "A-lines", "B-lines", "comments"])
        for p in range(1, 9):
            for k, point in enumerate(("L1", "R2")):
                score = (p + k) % 4
                name = f"patient_{p}_{point}"
                write_video(
                    root / "videos" / f"{name}.mp4", synthetic_frames(10, size=40, seed=p * 10 + k, b_lines=score > 0)
                )
                w.writerow([name, f"{score}.0", "yes", "yes ", ""])
    return root


def test_split_is_patient_disjoint(blues_like: Path) -> None:
    clips = load_covid_blues(blues_like)
    assert len(clips) == 16 and {c.group for c in clips} == {str(p) for p in range(1, 9)}
    for seed in range(5):
        train, val = split_by_group(clips, val_fraction=0.25, seed=seed)
        assert {c.group for c in train}.isdisjoint({c.group for c in val})
        assert len(train) + len(val) == 16 and val


def test_augment_keeps_range_and_is_seeded() -> None:
    x = torch.rand(4, 3, 32, 32)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a, b)


def test_augment_padding_fills_the_uncovered_margins() -> None:
    x = torch.full((64, 3, 32, 32), 0.6)  # a uniform grey frame: any black pixel is margin
    zeros = augment(x, torch.Generator().manual_seed(2))
    reflected = augment(x, torch.Generator().manual_seed(2), padding="reflection")
    dark = lambda t: float((t.mean(1) < 0.05).float().mean())  # noqa: E731
    assert dark(zeros) > 0.01  # shifts and zoom-outs uncover black margins
    assert dark(reflected) == 0.0  # reflection fills them with image


def test_optimizer_state_roundtrip(tmp_path: Path) -> None:
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-3)
    lin(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_optim(tmp_path / "o.safetensors", opt)
    opt2 = torch.optim.AdamW(lin.parameters(), lr=5.0)
    load_optim(tmp_path / "o.safetensors", opt2)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["lr"] == 1e-3
    for pid in s1["state"]:
        for k, v in s1["state"][pid].items():
            torch.testing.assert_close(torch.as_tensor(s2["state"][pid][k]), torch.as_tensor(v))


def _tiny_config(blues_like: Path, tmp_path: Path, **overrides: object) -> TrainConfig:
    """A seconds-long training run of the tiny architecture on the synthetic dataset."""
    settings: dict = {
        "tiny": True,
        "val_fraction": 0.25,
        "frames_per_clip": 4,
        "val_frames_per_clip": 3,
        "batch_size": 8,
        "cnn_epochs": 2,
        "lstm_epochs": 2,
        "seq_len": 6,
        "bf16": False,
        "command": "lusviewer train (test)",
        **overrides,
    }
    return TrainConfig(data=str(blues_like), out=str(tmp_path / "out"), work_dir=str(tmp_path / "work"), **settings)


def test_train_tiny_end_to_end_and_resume(blues_like: Path, tmp_path: Path) -> None:
    cfg = _tiny_config(blues_like, tmp_path)
    card_path = run_training(cfg)
    card = json.loads(card_path.read_text())
    split = card["training"]["split"]
    assert set(split["train_patients"]).isdisjoint(split["val_patients"])
    for key in ("cnn", "cnn_lstm", "baselines"):
        assert key in card["metrics"]
    assert card["metrics"]["cnn_lstm"]["frame"]["n"] == 10 * split["val_clips"]
    loaded = load_model(card_path)
    assert loaded.card.config.variant == "cnn_lstm"
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert state["cnn"]["done"] and state["cnn"]["epoch"] == 2 and state["lstm"]["done"]
    # Rerun on the same work dir: both stages are done, nothing is retrained.
    before = load_model(card_path).model.cnn.classifier[1].weight.detach().numpy()
    run_training(cfg)
    after = load_model(card_path).model.cnn.classifier[1].weight.detach().numpy()
    np.testing.assert_allclose(before, after, atol=1e-3)
    # The work dir resumes only its own run: another split or other labels are refused,
    # not trained on top of stages that saw the new validation patients.
    with pytest.raises(SystemExit, match="val_fraction"):
        run_training(_tiny_config(blues_like, tmp_path, val_fraction=0.5))
    labels = tmp_path / "labels.csv"
    clips = load_covid_blues(blues_like)
    labels.write_text("clip,score\n" + "".join(f"videos/{Path(c.path).name},{(c.score + 1) % 4}\n" for c in clips))
    with pytest.raises(SystemExit, match="other data"):
        run_training(_tiny_config(blues_like, tmp_path, labels=str(labels)))


def test_label_csv_with_group_column_and_regex(tmp_path: Path, blues_like: Path) -> None:
    from lusviewer.training.data import load_label_csv

    table = tmp_path / "labels.csv"
    table.write_text("clip,score,subject\nvideos/patient_1_L1.mp4,2,A\nvideos/patient_3_R2.mp4,0.0,B\n")
    by_col = load_label_csv(table, root=blues_like, group_column="subject")
    assert [(c.score, c.group) for c in by_col] == [(2, "A"), (0, "B")]
    assert Path(by_col[0].path) == blues_like / "videos" / "patient_1_L1.mp4"
    by_regex = load_label_csv(table, root=blues_like, group_by=r"patient_(\d+)_")
    assert [c.group for c in by_regex] == ["1", "3"]
    table.write_text("clip,score\nx.mp4,7\n")
    with pytest.raises(ValueError, match="not one of 0, 1, 2, 3"):
        load_label_csv(table)


def make_iclus(root: Path) -> Path:
    """ICLUS-DB-style frame folders: per-frame Score<N> in the file names."""
    import cv2

    for p in range(1, 7):
        for k in range(2):
            folder = root / f"Patient{p:02d}" / f"convex_{k}"
            folder.mkdir(parents=True)
            for i, f in enumerate(synthetic_frames(8, size=40, seed=p * 7 + k)):
                score = (p + k + (i >= 4)) % 4
                cv2.imwrite(str(folder / f"frame{i}_Score{score}.png"), f)
    return root


def test_iclus_layout_trains_with_per_frame_labels(tmp_path: Path) -> None:
    from lusviewer.training.data import load_dataset

    data = make_iclus(tmp_path / "iclus")
    clips = load_dataset(data, group_by=r"(Patient\d+)")
    assert len(clips) == 12 and {c.group for c in clips} == {f"Patient{p:02d}" for p in range(1, 7)}
    c = clips[0]
    assert c.frame_scores is not None and len(c.frame_scores) == 8 and c.score == max(c.frame_scores)
    cfg = TrainConfig(
        data=str(data), out=str(tmp_path / "out"), work_dir=str(tmp_path / "w"), tiny=True, group_by=r"(Patient\d+)",
        val_fraction=0.34, frames_per_clip=4, val_frames_per_clip=3, batch_size=8, cnn_epochs=1, lstm_epochs=1,
        seq_len=6, bf16=False, command="test", data_licence="test licence",
    )  # fmt: skip
    card = json.loads(run_training(cfg).read_text())
    assert card["training"]["labels"].startswith("per-frame labels for 12 of 12 clips")
    assert card["training"]["data_licence"] == "test licence"
    assert card["training"]["citation"].startswith("not stated")


def test_frame_label_csv_overrides_clip_score(tmp_path: Path, blues_like: Path) -> None:
    from lusviewer.training.data import load_dataset

    table = tmp_path / "frames.csv"
    table.write_text("clip,frame,score\npatient_1_L1.mp4,0,3\npatient_1_L1.mp4,2,1\n")
    clips = {Path(c.path).name: c for c in load_dataset(blues_like, frame_labels=table)}
    c = clips["patient_1_L1.mp4"]
    own = 1  # the clip's score in severity.csv
    assert c.frame_scores == (3, own, 1) and c.target(0) == 3 and c.target(9) == own
    assert c.score == 3  # a clip's score is its worst frame's
    assert clips["patient_2_L1.mp4"].frame_scores is None
    # The clip named by its path as in the labels, its stem, or relative to the table: the same.
    for name in ("videos/patient_1_L1.mp4", "patient_1_L1", str(blues_like / "videos" / "patient_1_L1.mp4")):
        table.write_text(f"clip,frame,score\n{name},0,3\n")
        assert {Path(x.path).name: x for x in load_dataset(blues_like, frame_labels=table)}[
            c.path.split("/")[-1]
        ].frame_scores == (3,)
    for body, message in (
        ("clip,frame,score\nnot_a_clip.mp4,0,1\n", "none of the data's clips"),
        ("clip,frame,score\npatient_1_L1.mp4,0,7\n", "not one of 0, 1, 2, 3"),
        ("clip,frame,score\npatient_1_L1.mp4,-1,1\n", "numbered from 0"),
        ("clip,frame\npatient_1_L1.mp4,0\n", "needs column"),
    ):
        table.write_text(body)
        with pytest.raises(ValueError, match=message):
            load_dataset(blues_like, frame_labels=table)


def test_label_csv_from_a_spreadsheet_and_bad_rows(tmp_path: Path, blues_like: Path) -> None:
    from lusviewer.training.data import load_dataset, load_label_csv

    table = tmp_path / "labels.csv"
    # Excel's "CSV UTF-8": a byte-order mark, semicolons.
    table.write_bytes("\ufeffclip;score;subject\nvideos/patient_1_L1.mp4;2;A\n".encode())
    assert [(c.score, c.group) for c in load_label_csv(table, root=blues_like, group_column="subject")] == [(2, "A")]
    for body, message in (
        ("clip,score\nvideos/patient_1_L1.mp4,2.7\n", "not one of 0, 1, 2, 3"),
        ("clip,score\nvideos/patient_1_L1.mp4,2\nvideos/patient_1_L1.mp4,1\n", "listed again"),
        ("clip,score\nvideos/patient_1_L1.mp4,2\n", "found 'clip', 'score'"),  # no 'pid' column
    ):
        table.write_text(body)
        with pytest.raises(ValueError, match=message):
            load_label_csv(table, root=blues_like, group_column="pid" if "found" in message else None)
    # Without a patient rule, clips whose names carry no patient id are refused, not split one by one.
    other = tmp_path / "other"
    other.mkdir()
    (other / "zone1.mp4").write_bytes(b"")
    table.write_text("clip,score\nzone1.mp4,1\n")
    with pytest.raises(ValueError, match="no patient id"):
        load_dataset(other, labels=table)
    assert load_dataset(other, labels=table, group_by="(.+)")[0].group == "zone1.mp4"
    with pytest.raises(ValueError, match="--labels"):
        load_dataset(other)  # clips but no label table named


def test_evaluate_cli_writes_report_and_pngs(tmp_path: Path, blues_like: Path, tiny_model: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "eval"
    run = subprocess.run(
        [sys.executable, "-m", "lusviewer", "evaluate", "--data", str(blues_like), "--model", str(tiny_model),
         "-o", str(out), "-q"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["level"] for r in rows] == ["frame", "clip", "frame", "clip"]  # model, then the baseline
    assert int(rows[0]["n"]) == 160 and int(rows[1]["n"]) == 16
    assert rows[2]["model"].startswith("always score ") and rows[2]["accuracy"]
    lo, hi = float(rows[1]["accuracy_ci_lo"]), float(rows[1]["accuracy_ci_hi"])
    assert 0 <= lo <= float(rows[1]["accuracy"]) <= hi <= 1
    report = (out / "report.md").read_text()
    assert "| frame | 160 |" in report and "resampling the 8 patients" in report
    assert "| clip: model minus baseline |" in report
    assert "| score >= 1 | score >= 2 | score >= 3 |" in report
    with open(out / "auc.csv", newline="") as fh:
        aucs = list(csv.DictReader(fh))
    assert [a["positive"] for a in aucs] == ["score >= 1", "score >= 2", "score >= 3"]
    for a in aucs:
        auc, lo, hi = float(a["auc"]), float(a["ci_lo"]), float(a["ci_hi"])
        assert 0 <= lo <= auc <= hi <= 1
    with open(out / "clips.csv", newline="") as fh:
        clips = list(csv.DictReader(fh))
    with open(out / "patients.csv", newline="") as fh:
        patients = list(csv.DictReader(fh))
    assert len(clips) == 16 and len(patients) == 8 and sum(int(p["clips"]) for p in patients) == 16
    for p in patients:  # the patient means are the means of that patient's clips
        mine = [c for c in clips if c["patient"] == p["patient"]]
        assert float(p["expert_mean_score"]) == pytest.approx(np.mean([int(c["expert_score"]) for c in mine]))
        assert float(p["model_mean_score"]) == pytest.approx(np.mean([int(c["clip_score"]) for c in mine]))
    assert "| model | 8 |" in report and "| always score " in report
    import cv2

    png = cv2.imread(str(out / "confusion_frame.png"))
    assert png is not None and png.shape[0] > 300


def test_evaluate_counts_clips_unlike_the_training_clips(tmp_path: Path, blues_like: Path) -> None:
    from conftest import make_tiny_model

    from lusviewer.training.evaluate import evaluate_model, write_eval_report

    clips = load_covid_blues(blues_like)[:4]
    plain = evaluate_model(load_model(make_tiny_model(tmp_path / "plain")), clips, bootstrap_reps=0)
    assert not plain.familiarity_checked and plain.unfamiliar == []
    assert "unlike" not in write_eval_report(plain, tmp_path / "plain-eval").read_text()
    strict = make_tiny_model(tmp_path / "strict", recon_error_limit=0.0)  # every clip is unlike
    result = evaluate_model(load_model(strict), clips, bootstrap_reps=0)
    assert result.familiarity_checked and result.unfamiliar == [c.path for c in clips]
    report = write_eval_report(result, tmp_path / "strict-eval").read_text()
    assert "4 of them look unlike the model's training clips" in report and clips[0].path in report


def test_bootstrap_resamples_patients_not_clips() -> None:
    from lusviewer.training.metrics import bootstrap_by_group

    # Patient A: 10 clips all right; patient B: 10 clips all wrong. Resampling patients
    # gives AA, AB or BB, so the accuracy interval spans 0 to 1 (resampling clips would
    # give a narrow interval around 0.5).
    groups = ["A"] * 10 + ["B"] * 10
    per_clip = [(np.array([1]), np.array([1]))] * 10 + [(np.array([1]), np.array([3]))] * 10
    ci = bootstrap_by_group(groups, per_clip, reps=400, seed=1)
    assert ci["accuracy"] == (0.0, 1.0)
    # Against a reference that is always wrong the paired difference is never negative.
    ref = [np.array([0])] * 20
    ci = bootstrap_by_group(groups, per_clip, reference=ref, reps=400, seed=1)
    assert ci["diff_accuracy"][0] >= 0.0 and ci["diff_accuracy"][1] == 1.0
    once = bootstrap_by_group(groups, per_clip, reps=50, seed=3)
    assert once == bootstrap_by_group(groups, per_clip, reps=50, seed=3)  # seeded


def test_out_of_fold_sections_leave_out_variants_with_unrecorded_folds(tmp_path: Path) -> None:
    from lusviewer.training.crossval import _out_of_fold_sections

    def fold(f: int, variant: str, clips: bool = True) -> dict[str, object]:
        rows = [
            {"clip": f"v/p{f}{i}.mp4", "group": f"{f}{i}", "score": i % 4, "pred": (i + 1) % 4, "risk": [0.5, 0.3, 0.1]}
            for i in range(4)
        ]
        auc = {"auc_ge1": 0.5, "auc_ge2": None, "auc_ge3": None}
        return {"fold": f, "variant": variant, "auc": auc, **({"clips": rows} if clips else {})}

    results = [fold(0, "cnn"), fold(1, "cnn"), fold(0, "densenet"), fold(1, "densenet", clips=False)]
    results += [{"fold": f, "variant": "majority", "majority_score": 0} for f in (0, 1)]
    cfg = TrainConfig(data="v", out=str(tmp_path))
    names = {"cnn": "proposed CNN", "densenet": "DenseNet-201", "majority": "always the majority score"}
    text = "\n".join(_out_of_fold_sections(results, tmp_path, cfg=cfg, variants=("densenet", "cnn"), names=names))
    assert "| DenseNet-201 |" not in text and "Not in these two sections: densenet" in text
    assert text.count("| proposed CNN |") == 2 and "| proposed CNN | 8 |" in text
    assert "| always the majority score | 8 |" in text and "n/a (constant)" in text
    with open(tmp_path / "predictions.csv", newline="") as fh:
        assert {r["variant"] for r in csv.DictReader(fh)} == {"cnn"}


def test_patient_level_metrics_match_scipy() -> None:
    from scipy import stats

    from lusviewer.training.metrics import patient_metrics, patient_scores, spearman

    groups = ["2", "1", "1", "10", "10", "10"]
    names, n, expert, model = patient_scores(groups, [0, 2, 1, 3, 3, 2], [0, 1, 1, 2, 3, 3])
    assert names == ["1", "2", "10"] and list(n) == [2, 1, 3]  # numeric ids in numeric order
    assert list(expert) == [1.5, 0.0, pytest.approx(8 / 3)] and list(model) == [1.0, 0.0, pytest.approx(8 / 3)]
    m = patient_metrics(expert, model)
    assert m["mae"] == pytest.approx(0.5 / 3) and m["spearman"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 12), rng.integers(0, 4, 12)  # many ties
        assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    assert np.isnan(spearman([1, 1, 1], [0, 1, 2]))  # constant: undefined, not 0


def test_confusion_png_and_metrics_agree() -> None:
    from lusviewer.training.evaluate import confusion_png
    from lusviewer.training.metrics import confusion

    cm = confusion([0, 1, 2, 3, 3], [0, 1, 1, 3, 2])
    assert cm.sum() == 5 and cm[2, 1] == 1 and cm[3, 2] == 1
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        assert confusion_png(cm, Path(d) / "cm.png", "test").is_file()


def test_group_kfold_patient_disjoint_and_stratified() -> None:
    from lusviewer.training.data import LabelledClip, group_kfold

    rng = np.random.default_rng(0)
    clips = [
        LabelledClip(f"p{p}_{i}.mp4", int(s), str(p))
        for p in range(40)
        for i, s in enumerate(rng.integers(0, 4, rng.integers(2, 8)))
    ]
    folds = group_kfold(clips, k=5, seed=1)
    tests = [{c.group for c in test} for _, test in folds]
    assert set().union(*tests) == {str(p) for p in range(40)}  # every patient tested once
    assert sum(len(t) for t in tests) == 40
    for train, test in folds:
        assert {c.group for c in train}.isdisjoint({c.group for c in test})
        assert len(train) + len(test) == len(clips)
        worst = {max(c.score for c in test if c.group == g) for g in {c.group for c in test}}
        assert worst >= {2, 3}  # the severe strata are spread over all folds
    sizes = [len(test) for _, test in folds]
    assert max(sizes) - min(sizes) <= 8
    assert group_kfold(clips, k=5, seed=1)[0][1] == folds[0][1]  # deterministic
    with pytest.raises(ValueError):
        group_kfold(clips, k=41, seed=0)


def test_crossval_tiny_three_variants_and_resume(tmp_path: Path, blues_like: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "cv"
    args = [
        sys.executable, "-m", "lusviewer", "crossval", "--data", str(blues_like), "--out", str(out), "-k", "2",
        "--tiny", "--fp32", "--frames-per-clip", "3", "--batch-size", "2", "--cnn-epochs", "1", "--lstm-epochs", "1",
        "--val-fraction", "0.25",
    ]  # fmt: skip
    run = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 4 * 2  # folds x (variants + majority baseline) x levels
    assert {r["variant"] for r in rows} == {"densenet", "cnn", "cnn_lstm", "majority"}
    report = (out / "report.md").read_text()
    for name in ("DenseNet-201", "proposed CNN", "CNN+LSTM"):
        assert report.count(f"| {name} |") == 4  # frame, clip, AUC and patient tables
    assert report.count("| always the majority score (baseline) |") == 3  # no AUC: it has no risk
    assert "±" in report
    assert "Every weight from scratch" in report
    tested = [json.loads((out / f"fold{i}" / "cnn" / "result.json").read_text())["test_patients"] for i in range(2)]
    assert set(tested[0]).isdisjoint(tested[1]) and len(tested[0]) + len(tested[1]) == 8
    assert (out / "confusion_cnn_lstm_clip.png").is_file()
    # Every test clip's out-of-fold prediction, once per variant, and the sections built on them.
    with open(out / "predictions.csv", newline="") as fh:
        preds = list(csv.DictReader(fh))
    n_clips = len(load_covid_blues(blues_like))
    assert len(preds) == 3 * n_clips
    for v in ("densenet", "cnn", "cnn_lstm"):
        mine = [p for p in preds if p["variant"] == v]
        assert sorted(p["clip"] for p in mine) == sorted(f"videos/{c}" for c in os.listdir(blues_like / "videos"))
        assert all(0.0 <= float(p["risk_ge3"]) <= float(p["risk_ge2"]) <= float(p["risk_ge1"]) <= 1.0 for p in mine)
    assert "## Threshold-free, clip level" in report and "## Patient level" in report
    assert report.count("| CNN+LSTM | 8 |") == 1  # the patient-level row covers all 8 patients
    assert "| minus the baseline's |" in report
    # A rerun finds every fold done and only rewrites the report.
    again = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "fold 1/2" not in again.stdout
    # Another -k on the same --out is refused: its folds have other test patients.
    other_k = subprocess.run([*args, "-k", "3"], capture_output=True, text=True, timeout=900)  # the last -k counts
    assert other_k.returncode != 0 and "other test patients" in other_k.stderr, other_k.stderr[-2000:]
    # CNN+LSTM's stage 1 is the cnn variant's CNN, trained once per fold.
    for i in range(2):
        state = json.loads((out / f"fold{i}" / "cnn_lstm" / "state.json").read_text())
        assert state["cnn"]["reused_from"].endswith(f"fold{i}/cnn")


def test_crossval_run_folds_in_separate_processes_then_report(tmp_path: Path, blues_like: Path) -> None:
    """--run-folds trains only its folds and writes no report (folds run in parallel share
    --out); a plain run then reads every fold, trains nothing, and writes the report."""
    from lusviewer.cli import run as cli_run

    out = tmp_path / "cv"
    base = [
        "crossval", "--data", str(blues_like), "--out", str(out), "-k", "2", "--variants", "cnn", "--tiny",
        "--fp32", "--frames-per-clip", "3", "--batch-size", "2", "--cnn-epochs", "1", "--val-fraction", "0.25",
    ]  # fmt: skip
    assert cli_run([*base, "--run-folds", "1"]) == 0
    assert (out / "fold1" / "cnn" / "result.json").is_file()
    assert not (out / "fold0").exists() and not (out / "report.md").exists()
    assert cli_run([*base, "--run-folds", "5"]) == 2  # no such fold: usage error
    assert cli_run([*base, "--run-folds", ","]) == 2  # no fold at all
    assert cli_run([*base, "--run-folds", "0"]) == 0
    assert not (out / "report.md").exists()  # fold processes never write the report
    assert not list(out.rglob("*.tmp"))
    mtimes = {f: (out / f"fold{f}" / "cnn" / "result.json").stat().st_mtime_ns for f in (0, 1)}
    assert cli_run(base) == 0  # every fold done: reads them, trains nothing, writes the report
    assert {f: (out / f"fold{f}" / "cnn" / "result.json").stat().st_mtime_ns for f in (0, 1)} == mtimes
    report = (out / "report.md").read_text()
    assert "summed over the 2 runs" in report and "trained on: " in report and "CPU cores" in report
    assert "--run-folds" not in report
    with open(out / "metrics.csv", newline="") as fh:
        assert {(r["fold"], r["variant"]) for r in csv.DictReader(fh)} == {
            (f, v) for f in ("0", "1") for v in ("cnn", "majority")
        }


def test_torchrun_two_cpu_processes_gloo(tmp_path: Path, blues_like: Path) -> None:
    """The same `lusviewer train` runs data-parallel under torchrun (gloo on CPU)."""
    import subprocess
    import sys

    args = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "lusviewer", "train", "--data", str(blues_like), "--out", str(tmp_path / "out"),
        "--work-dir", str(tmp_path / "work"), "--tiny", "--fp32", "--frames-per-clip", "4", "--batch-size", "4",
        "--cnn-epochs", "2", "--lstm-epochs", "1", "--val-fraction", "0.25", "--threads", "1",
    ]  # fmt: skip
    run = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "rank 0: data-parallel over 2 processes" in run.stdout
    assert "rank 1: data-parallel over 2 processes" in run.stdout
    card = json.loads((tmp_path / "out" / "lusviewer-hybrid.json").read_text())
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert state["cnn"]["epoch"] == 2 and card["metrics"]["cnn_lstm"]["frame"]["n"] > 0


def test_plateau_halves_lr_and_counts_towards_early_stop() -> None:
    from lusviewer.training.stages import plateau_step

    cfg = TrainConfig(data="-", out="-", lr=0.002, plateau_patience=2)
    st: dict = {"epoch": 0, "best": None, "lr": 0.002, "since_best": 0}
    lrs, improved = [], []
    for f1 in (0.3, 0.4, 0.35, 0.38, 0.39, 0.2, 0.5, 0.1):
        st["epoch"] += 1
        improved.append(plateau_step(st, {"macro_f1": f1}, cfg))
        lrs.append(st["lr"])
    assert improved == [True, True, False, False, False, False, True, False]
    assert lrs == [0.002, 0.002, 0.002, 0.001, 0.001, 0.0005, 0.0005, 0.0005]
    assert st["best"]["epoch"] == 7 and st["since_best"] == 1
    adamw = TrainConfig(data="-", out="-", optimizer="adamw", plateau_patience=1)
    st = {"epoch": 1, "best": {"macro_f1": 0.5}, "lr": 0.001, "since_best": 0}
    assert not plateau_step(st, {"macro_f1": 0.1}, adamw) and st["lr"] == 0.001  # cosine schedule instead


def test_augment_group_shares_one_draw() -> None:
    from lusviewer.training.data import augment

    frame = torch.rand(1, 3, 32, 32)
    out = augment(frame.repeat(6, 1, 1, 1), torch.Generator().manual_seed(3), group=3)
    torch.testing.assert_close(out[0], out[2])
    torch.testing.assert_close(out[3], out[5])
    assert not torch.allclose(out[0], out[3])
    with pytest.raises(ValueError, match="multiple of group"):
        augment(torch.rand(4, 3, 32, 32), torch.Generator(), group=3)


def test_end_to_end_stage_keeps_the_best(blues_like: Path, tmp_path: Path) -> None:
    cfg = _tiny_config(
        blues_like,
        tmp_path,
        frames_per_clip=8,
        cnn_epochs=1,
        lstm_epochs=1,
        e2e_epochs=2,
        e2e_seq_len=4,
        e2e_batch_size=2,
    )
    card = json.loads(run_training(cfg).read_text())
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert state["e2e"]["done"] and state["e2e"]["epoch"] == 2
    assert card["training"]["epochs"]["end_to_end"] == 2
    best = state["e2e"]["best"]
    # The kept model is the best of the two-stage start (epoch 0) and the fine-tuned epochs.
    assert card["metrics"]["cnn_lstm"]["frame"]["macro_f1"] == pytest.approx(best["frame"]["macro_f1"], abs=0.02)
    loaded = load_model(tmp_path / "out" / "lusviewer-hybrid.json")
    assert loaded.card.training["settings"]["e2e_epochs"] == 2


def test_end_to_end_stage_resumes_an_interrupted_run(
    blues_like: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {"frames_per_clip": 8, "cnn_epochs": 1, "lstm_epochs": 1, "e2e_seq_len": 4, "e2e_batch_size": 2}
    run_training(_tiny_config(blues_like, tmp_path, e2e_epochs=1, **settings))
    state_path = tmp_path / "work" / "state.json"
    state = json.loads(state_path.read_text())
    assert state["e2e"]["epoch"] == 1 and (tmp_path / "work" / "e2e_last.safetensors").is_file()
    # As if the run had been stopped after its first epoch of a two-epoch stage.
    state["e2e"]["done"] = False
    state_path.write_text(json.dumps(state))
    capsys.readouterr()
    card = json.loads(run_training(_tiny_config(blues_like, tmp_path, e2e_epochs=2, **settings)).read_text())
    log = capsys.readouterr().out
    assert "resuming the end-to-end stage at epoch 1" in log
    assert "end-to-end epoch 2:" in log and "end-to-end epoch 1:" not in log
    assert "stage 1 already done" in log and "end to end: starting from" not in log
    assert card["training"]["epochs"]["end_to_end"] == 2


def _logits_for(frame_scores: list[list[int]], confidence: float = 8.0) -> torch.Tensor:
    """Confident logits (B, T, 4): each frame says its given score."""
    return torch.nn.functional.one_hot(torch.tensor(frame_scores), 4).float() * confidence


def test_mil_loss_scores_a_clip_by_its_worst_frame() -> None:
    """A score-2 clip: normal frames beside one score-2 frame cost (almost) nothing; no
    frame at 2 costs, and any frame above 2 costs; a score-0 clip wants every frame 0."""
    from lusviewer.training.losses import mil_ordinal_loss

    w = torch.ones(4)
    two = torch.tensor([2])

    def loss(frames: list[int], score: torch.Tensor = two) -> float:
        return float(mil_ordinal_loss(_logits_for([frames]), score, w))

    assert loss([0, 0, 2, 1]) < 0.01
    assert loss([0, 0, 0, 1]) > 5  # the worst pattern is missed
    assert loss([0, 3, 2, 1]) > 5  # a frame worse than the clip
    assert loss([0, 0, 0, 0], torch.tensor([0])) < 0.01
    assert loss([0, 0, 1, 0], torch.tensor([0])) > 5
    # The frame cross-entropy would push the normal frames to 2; this loss leaves them.
    logits = _logits_for([[0, 0, 2, 1]]).requires_grad_()
    mil_ordinal_loss(logits, two, w).backward()
    assert float(logits.grad[0, :2].abs().max()) < 1e-3
    # Padding never counts: a padded frame saying 3 changes nothing.
    padded = _logits_for([[0, 0, 2, 1, 3]])
    mask = torch.tensor([[True, True, True, True, False]])
    assert float(mil_ordinal_loss(padded, two, w, mask)) == pytest.approx(loss([0, 0, 2, 1]))
    # Against the definition: per clip, BCE of max_t P_t(>= k) vs [s >= k], class-weighted.
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 4)
    scores = torch.tensor([0, 3, 1])
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    p = logits.softmax(-1)
    expected_num = 0.0
    for b in range(3):
        for k in (1, 2, 3):
            q = float(p[b, :, k:].sum(-1).max())
            y = float(scores[b] >= k)
            expected_num -= float(weights[scores[b]]) * (y * np.log(q) + (1 - y) * np.log(1 - q))
    # (weighted like F.cross_entropy(weight=): over the sum of the weights)
    expected = expected_num / float(weights[scores].sum())
    assert float(mil_ordinal_loss(logits, scores, weights)) == pytest.approx(expected, rel=1e-5)
    # A confidently wrong clip still has a gradient (no clamping), and bf16 logits work.
    wrong = (_logits_for([[3, 3, 3]], confidence=40.0)).requires_grad_()
    mil_ordinal_loss(wrong, torch.tensor([0]), w).backward()
    assert float(wrong.grad.abs().max()) > 0.1
    assert torch.isfinite(mil_ordinal_loss(logits.bfloat16(), scores, weights))


def test_train_with_mil_loss_both_stages(blues_like: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lusviewer.training import stages as train_module

    calls: list[tuple[tuple[int, ...], list[int]]] = []
    real = train_module.mil_ordinal_loss

    def spy(logits: torch.Tensor, scores: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor | None = None):
        calls.append((tuple(logits.shape), scores.tolist()))
        return real(logits, scores, weights, mask)

    monkeypatch.setattr(train_module, "mil_ordinal_loss", spy)
    cfg = _tiny_config(blues_like, tmp_path)
    cfg.loss, cfg.frames_per_clip, cfg.batch_size = "mil", 4, 10  # 2 whole clips of 4 frames per batch
    card = json.loads(run_training(cfg).read_text())
    stage1 = [c for c in calls if c[0][1] == 4]
    stage2 = [c for c in calls if c[0][1] == 10]  # whole clips: the synthetic clips have 10 frames
    assert stage1 and all(shape[0] == 2 for shape, _ in stage1)
    assert stage2 and len(stage1) + len(stage2) == len(calls)
    # Batches hold whole clips: the scores handed to the loss are the clips' scores.
    clip_scores = {c.score for c in load_covid_blues(blues_like)}
    assert all(set(s) <= clip_scores for _, s in calls)
    assert card["training"]["settings"]["loss"] == "mil"
    assert "worst frame" in card["training"]["labels"]
    assert card["metrics"]["cnn_lstm"]["clip"]["n"] == card["training"]["split"]["val_clips"]
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert "clip_macro_f1" in state["cnn"]["best"]  # stage 1's epoch was chosen on clips
    assert state["lstm"]["done"]
    # The work dir holds a mil run: a frame-loss run must not resume it.
    cfg.loss = "frame"
    with pytest.raises(SystemExit, match="loss 'mil'"):
        run_training(cfg)
    cfg.work_dir = str(tmp_path / "work2")
    cfg.loss = "hinge"
    with pytest.raises(ValueError, match="unknown loss"):
        run_training(cfg)
    cfg.loss, cfg.e2e_epochs = "mil", 1
    with pytest.raises(ValueError, match="end-to-end"):
        run_training(cfg)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_resumed_training_equals_an_uninterrupted_run(blues_like: Path, tmp_path: Path) -> None:
    """Stopped after each stage's first epoch and resumed, a run ends with the very
    weights of the same run done in one go: the checkpoints carry the random streams
    (frame sampling, augmentation, dropout), and an interrupted stage 2 starts again."""
    settings = {"cnn_epochs": 2, "lstm_epochs": 2, "e2e_epochs": 2, "e2e_seq_len": 4, "e2e_batch_size": 2}
    whole = tmp_path / "whole"
    run_training(_tiny_config(blues_like, whole, **settings))

    parts = tmp_path / "parts"
    first = {**settings, "cnn_epochs": 1}
    run_training(_tiny_config(blues_like, parts, **first))
    # As if the run had been stopped after stage 1's first epoch of two, and (below)
    # stage 3's, and stage 2 had been interrupted after one epoch.
    state_path = parts / "work" / "state.json"
    state = json.loads(state_path.read_text())
    assert state["cnn"]["epoch"] == 1
    state["cnn"]["done"] = False
    for stage in ("lstm", "e2e"):
        state.pop(stage)
    state_path.write_text(json.dumps(state))
    for name in ("lstm_best", "e2e_best", "e2e_last", "e2e_optim"):
        (parts / "work" / f"{name}.safetensors").unlink()
    run_training(_tiny_config(blues_like, parts, **{**settings, "e2e_epochs": 1}))
    state = json.loads(state_path.read_text())
    state["lstm"].update(done=False, epoch=1)
    state["e2e"]["done"] = False
    state_path.write_text(json.dumps(state))
    run_training(_tiny_config(blues_like, parts, **settings))

    def same(name: str) -> None:
        a, b = _weights(whole / "work" / f"{name}.safetensors"), _weights(parts / "work" / f"{name}.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs after resuming"

    for name in ("cnn_last", "cnn_best", "lstm_best", "e2e_last", "e2e_best"):
        same(name)
    card_a = json.loads((whole / "out" / "lusviewer-hybrid.json").read_text())
    card_b = json.loads((parts / "out" / "lusviewer-hybrid.json").read_text())
    assert card_a["metrics"] == card_b["metrics"]
    # Stage 3 from its start in a process where stages 1 and 2 are already done.
    state = json.loads(state_path.read_text())
    state.pop("e2e")
    state_path.write_text(json.dumps(state))
    for name in ("e2e_best", "e2e_last", "e2e_optim"):
        (parts / "work" / f"{name}.safetensors").unlink()
    run_training(_tiny_config(blues_like, parts, **settings))
    for name in ("e2e_last", "e2e_best"):
        same(name)


def test_schedule_follows_epochs_unless_the_clock_binds() -> None:
    from lusviewer.training.loop import schedule_fraction

    # 10 epochs at 30 s each under a 600-minute budget: epochs only, whatever the clock says
    assert schedule_fraction(95.0, 36000.0, 3.0, 10) == 0.3
    assert schedule_fraction(97.5, 36000.0, 3.0, 10) == 0.3
    assert schedule_fraction(0.01, 36000.0, 0.0, 10) == 0.0
    # 10 epochs at 30 s each under a 2-minute budget: the clock (4 epochs fit)
    assert schedule_fraction(60.0, 120.0, 2.0, 10) == 0.5
    assert schedule_fraction(200.0, 120.0, 5.0, 10) == 1.0


def test_training_commands_report_bad_data_in_one_line(tmp_path: Path, blues_like: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("clip,score\nvideos/patient_1_L1.mp4,1\nvideos/patient_9_missing.mp4,2\n")
    a_file = tmp_path / "afile.txt"
    a_file.write_text("x")
    common = ["--data", str(blues_like), "--tiny", "--cnn-epochs", "1", "--work-dir", str(tmp_path / "w")]
    cv_common = ["crossval", "--data", str(blues_like), "--tiny"]
    cases = [
        (["train", *common, "--labels", str(labels), "--out", str(tmp_path / "o")], "patient_9_missing.mp4"),
        # 2 patients, 2 folds: each fold trains on 1 patient, so no validation split (else that is said first)
        (
            [*cv_common, "--labels", str(labels), "-k", "2", "--val-fraction", "0", "--out", str(tmp_path / "cv")],
            "patient_9_missing.mp4",
        ),
        (["train", *common, "--val-fraction", "1", "--out", str(tmp_path / "o")], "--val-fraction"),
        (["train", *common, "--out", str(a_file)], "is a file"),
        (["train", *common, "--cnn-epochs", "0", "--out", str(tmp_path / "o")], "--cnn-epochs"),
        (["train", *common, "--labels", str(labels), "--group-column", "pid", "--out", str(tmp_path / "o")], "'pid'"),
        (["crossval", "--data", str(tmp_path / "nope"), "--tiny", "--out", str(tmp_path / "cv")], "no such folder"),
        (["evaluate", "--data", str(blues_like), "-o", str(a_file)], "is a file"),
        (["train", *common, "--out", str(resource_path("models")), "--name", "lusviewer-compact"], "shipped model"),
    ]
    import subprocess
    import sys

    for args, expected in cases:
        out = subprocess.run([sys.executable, "-m", "lusviewer", *args], capture_output=True, text=True, timeout=600)
        assert out.returncode == 2 and expected in out.stderr, (args, out.stderr[-1500:])
        assert "Traceback" not in out.stderr, (args, out.stderr[-1500:])


def test_fold_dirs_of_another_split_are_refused_before_any_work(tmp_path: Path, blues_like: Path) -> None:
    import shutil

    from lusviewer.training.crossval import _check_fold_dirs
    from lusviewer.training.data import dataset_fingerprint, group_kfold, load_dataset

    cfg = _tiny_config(blues_like, tmp_path)
    clips = load_dataset(blues_like)
    folds = group_kfold(clips, k=2, seed=0)
    out = tmp_path / "cv"
    _check_fold_dirs(cfg, clips, folds, ("cnn", "cnn_lstm"), out, None)  # nothing there yet: fine
    # A fold stopped half-way under -k 4 (no result.json yet) holds other test patients.
    work = out / "fold0" / "cnn"
    work.mkdir(parents=True)
    (work / "state.json").write_text(json.dumps({"fold": {"k": 4, "test_patients": ["1"]}}))
    with pytest.raises(SystemExit, match="another split"):
        _check_fold_dirs(cfg, clips, folds, ("cnn_lstm",), out, None)  # the cnn dir CNN+LSTM would reuse
    # The same data in another folder (another machine) has the same fingerprint.
    moved = tmp_path / "moved"
    shutil.copytree(blues_like, moved)
    assert dataset_fingerprint(load_dataset(moved), moved) == dataset_fingerprint(clips, blues_like)
