from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, make_dicom, make_tiny_model, shared_data

from lusviewer import __version__
from lusviewer.report import CLIP_COLUMNS, FRAME_COLUMNS


def lusviewer(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lusviewer", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=600,
    )


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def check_report(report: Path, clips: dict[str, int], model: Path | None = None) -> None:
    """The report's shape, and every frame's score as its model's clip rule reads it: the
    most probable score, or (a card with the expected rule, the shipped one by default when
    ``model`` is None) its expected severity cut at the card's thresholds."""
    card = json.loads((model or ROOT / "models" / "lusviewer-compact.json").read_text())
    rule = card.get("inference", {}).get("clip_rule")
    cuts = rule["thresholds"] if isinstance(rule, dict) else None
    cols, rows = read_csv(report)
    assert tuple(cols[: len(FRAME_COLUMNS)]) == FRAME_COLUMNS
    assert len(rows) == sum(clips.values())
    for r in rows:
        p = [float(r[f"p{k}"]) for k in range(4)]
        assert abs(sum(p) - 1.0) < 1e-4
        if cuts is None:
            assert int(r["score"]) == int(np.argmax(p))
        else:
            severity = float(np.dot(p, range(4)))
            near = min(abs(severity - t) for t in cuts) < 1e-4  # the CSV's 6 decimals
            assert near or int(r["score"]) == sum(severity >= t for t in cuts)
    ccols, crows = read_csv(report.with_name(report.stem + "_clips.csv"))
    assert tuple(ccols[: len(CLIP_COLUMNS)]) == CLIP_COLUMNS
    assert {r["clip"]: int(r["frames"]) for r in crows} == clips
    for r in crows:
        assert sum(int(r[f"n{k}"]) for k in range(4)) == int(r["frames"])


def test_version() -> None:
    out = lusviewer("--version")
    assert out.returncode == 0 and __version__ in out.stdout


def test_end_to_end_shipped_model_on_shipped_sample(tmp_path: Path) -> None:
    """The README's main job: the shipped model scores the shipped sample clip."""
    report = tmp_path / "report.csv"
    out = lusviewer("score", "resources/sample_clip.mp4", "-o", str(report))
    assert out.returncode == 0, out.stderr
    check_report(report, {"resources/sample_clip.mp4": 50})
    _, rows = read_csv(report)
    card = json.loads((ROOT / "models" / "lusviewer-compact.json").read_text())
    assert {r["weights_sha256"] for r in rows} == {card["sha256"]}
    assert all(r["recon_error"] for r in rows)


def test_bad_inputs_reported_and_others_scored(tmp_path: Path, tiny_model: Path, synthetic_clip: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp4"
    data = synthetic_clip.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    text = tmp_path / "notes.avi"
    text.write_text("not a video at all\n" * 20)
    missing = tmp_path / "missing.mp4"
    report = tmp_path / "out" / "report.csv"
    out = lusviewer(
        "score", str(empty), str(synthetic_clip), str(truncated), str(missing), str(text),
        "--model", str(tiny_model), "-o", str(report), "-q",
    )  # fmt: skip
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("lusviewer: error:")]
    assert len(errors) == 4, out.stderr
    for bad in (empty, truncated, missing, text):
        assert sum(str(bad) in line for line in errors) == 1
    assert "Traceback" not in out.stderr
    # No decoder chatter from OpenCV / FFmpeg beside lusviewer's own lines.
    for chatter in ("moov atom", "VIDEOIO", "[ WARN:", "Invalid data found"):
        assert chatter not in out.stderr, out.stderr
    check_report(report, {str(synthetic_clip): 40}, tiny_model)
    assert not list(report.parent.glob(".*.tmp"))


def test_folder_input_and_model_hash_mismatch(tmp_path: Path, tiny_model: Path, synthetic_clip: Path) -> None:
    folder = tmp_path / "clips"
    (folder / "day2").mkdir(parents=True)
    (folder / "a.mp4").write_bytes(synthetic_clip.read_bytes())
    (folder / "day2" / "b.mp4").write_bytes(synthetic_clip.read_bytes())
    report = tmp_path / "r.csv"
    exam = tmp_path / "exam.csv"
    out = lusviewer(
        "score", str(folder), "--model", str(tiny_model), "-o", str(report), "--batch-size", "5", "--exam", str(exam)
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    check_report(report, {str(folder / "a.mp4"): 40, str(folder / "day2" / "b.mp4"): 40}, tiny_model)
    # The exam: one row per clip (zone) and the LUS score total, the sum of the clip scores.
    _, clip_rows = read_csv(report.with_name("r_clips.csv"))
    _, exam_rows = read_csv(exam)
    assert [r["zone"] for r in exam_rows[:-1]] == ["a", "b"]
    assert [r["clip_score"] for r in exam_rows[:-1]] == [r["clip_score"] for r in clip_rows]
    total = exam_rows[-1]
    assert total["clip"] == "TOTAL" and total["frames"] == "2"
    assert int(total["clip_score"]) == sum(int(r["clip_score"]) for r in clip_rows)
    assert f"LUS score {total['clip_score']} of 6 (2 zones)" in out.stderr
    clash = lusviewer("score", str(folder), "--model", str(tiny_model), "-o", str(report), "--exam", str(report))
    assert clash.returncode == 2 and "would overwrite the report" in clash.stderr
    six = lusviewer(
        "score", str(folder), "--model", str(tiny_model), "-o", str(report), "--exam", str(exam), "--exam-zones", "6"
    )  # fmt: skip
    assert six.returncode == 0 and "of 18, INCOMPLETE: 2 of 6 zones scored" in six.stderr, six.stderr
    assert "INCOMPLETE, 4 zones not scored" in read_csv(exam)[1][-1]["zone"]

    bad_model = tmp_path / "model"
    bad_model.mkdir()
    for f in (tiny_model, tiny_model.with_suffix(".safetensors")):
        (bad_model / f.name).write_bytes(f.read_bytes())
    w = bad_model / tiny_model.with_suffix(".safetensors").name
    w.write_bytes(w.read_bytes()[:-1] + b"\0")
    report2 = tmp_path / "r2.csv"
    out = lusviewer("score", str(folder), "--model", str(bad_model / tiny_model.name), "-o", str(report2))
    assert out.returncode == 2
    assert "does not match the model card" in out.stderr and "Traceback" not in out.stderr
    assert not report2.exists()


def test_score_real_covid_blues_clip_with_corrupt_neighbour(tmp_path: Path) -> None:
    clip = shared_data("covid-blues", "videos", "patient_11_L1.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(clip.read_bytes()[:5000])
    report = tmp_path / "report.csv"
    out = lusviewer("score", str(clip), str(corrupt), "-o", str(report), "-q")
    assert out.returncode == 1
    assert str(corrupt) in out.stderr
    from lusviewer.io import open_clip

    with open_clip(clip) as c:
        n = c.info.frame_count
    check_report(report, {str(clip): n})


@pytest.mark.parametrize("args", [["score"], ["score", "x.mp4", "--rule", "mean"]])
def test_usage_errors(args: list[str]) -> None:
    assert lusviewer(*args).returncode == 2


def test_score_dicom(tmp_path: Path, tiny_model: Path) -> None:
    from lusviewer.io.synthetic import synthetic_frames

    frames = np.stack([f[:, :, 0] for f in synthetic_frames(9, size=48, seed=9)])
    dcm = make_dicom(tmp_path / "clip.dcm", frames, "MONOCHROME2", FrameTime="50")
    report = tmp_path / "r.csv"
    out = lusviewer("score", str(dcm), "--model", str(tiny_model), "-o", str(report), "-q")
    assert out.returncode == 0, out.stderr
    check_report(report, {str(dcm): 9}, tiny_model)
    _, rows = read_csv(report)
    assert rows[1]["time_s"] == "0.0500"  # 20 fps from Frame Time


def test_info_shows_card_and_verifies_hash(tiny_model: Path) -> None:
    out = lusviewer("info", "--model", str(tiny_model))
    assert out.returncode == 0, out.stderr
    assert "tiny-cnn_lstm" in out.stdout and "sha256 verified" in out.stdout
    pretraining = ROOT / "docs" / "results" / "pretrain-simsiam-64px" / "card.json"  # not a scoring model
    out = lusviewer("info", "--model", str(pretraining))
    assert out.returncode == 2 and "--init-densenet" in out.stderr and "Traceback" not in out.stderr


def test_self_test(tiny_model: Path, tmp_path: Path) -> None:
    ok = lusviewer("--self-test")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("lusviewer self-test ok:") and len(ok.stdout.strip().splitlines()) == 1
    bad = lusviewer("--self-test", "--model", str(tmp_path / "missing.json"))
    assert bad.returncode == 1 and "FAILED" in bad.stdout and "missing.json" in bad.stdout


def test_info_lists_the_cards_crossval_table() -> None:
    from lusviewer.cli import model_summary

    m = {k: [0.5, 0.1] for k in ("accuracy", "sensitivity", "specificity", "macro_f1", "within_one", "qwk")}
    card = {
        "name": "x",
        "architecture": {"variant": "cnn"},
        "input": {"size": 64},
        "weights_file": "x.safetensors",
        "sha256": "0" * 64,
        "metrics": {
            "crossval": {"note": "reduced", "command": "lusviewer crossval ...", "results": {"cnn": {"clip": m}}},
            "crossval_64px": {"title": "64 px", "command": "other", "results": {"cnn_lstm": {"frame": m}}},
        },
    }
    assert "familiarity check" not in model_summary(card)
    card["inference"] = {"recon_error_limit": 0.0871, "recon_error_check": "how"}
    text = model_summary(card)
    assert "above 0.087 is flagged as unlike the training clips (how)" in text
    assert "Cross-validation (mean ± sd over folds):" in text
    assert "Cross-validation (64 px) (mean ± sd over folds):" in text and "| CNN+LSTM | frame |" in text
    assert "| proposed CNN | clip | 0.500 ± 0.100 | 0.500 ± 0.100 | 0.500 ± 0.100 | 0.500 ± 0.100 |" in text
    assert "`lusviewer crossval ...`" in text


def test_unfamiliar_clips_are_flagged_against_the_cards_limit(
    tmp_path: Path, tiny_model: Path, synthetic_clip: Path
) -> None:
    def clip_row(path: Path) -> dict[str, str]:
        with open(path, newline="") as fh:
            return next(csv.DictReader(fh))

    card = json.loads(tiny_model.read_text())
    assert "recon_error_limit" not in card["inference"]  # no limit: the column stays empty
    out = lusviewer("score", str(synthetic_clip), "--model", str(tiny_model), "-o", str(tmp_path / "a.csv"), "-q")
    assert out.returncode == 0, out.stderr
    row = clip_row(tmp_path / "a_clips.csv")
    mean = float(row["recon_error_mean"])
    assert mean > 0 and row["unfamiliar"] == ""
    assert "unlike the model's training clips" not in out.stderr
    for limit, flag in ((mean / 2, "yes"), (mean * 2, "no")):
        path = make_tiny_model(tmp_path / f"limit-{flag}", recon_error_limit=limit)  # the same seed: same weights
        out = lusviewer("score", str(synthetic_clip), "--model", str(path), "-o", str(tmp_path / f"{flag}.csv"), "-q")
        assert out.returncode == 0, out.stderr
        row = clip_row(tmp_path / f"{flag}_clips.csv")
        assert row["unfamiliar"] == flag and float(row["recon_error_mean"]) == pytest.approx(mean, rel=1e-4)
        assert ("unlike the model's training clips" in out.stderr) == (flag == "yes"), out.stderr


def test_outputs_are_checked_before_any_scoring(tmp_path: Path, tiny_model: Path, synthetic_clip: Path) -> None:
    clip = tmp_path / "victim.mp4"
    clip.write_bytes(synthetic_clip.read_bytes())
    original = clip.read_bytes()
    folder = tmp_path / "out.csv"
    folder.mkdir()
    a_file = tmp_path / "note.txt"
    a_file.write_text("x")
    cases = [
        (["-o", str(clip)], "one of the input clips"),  # the report would overwrite the clip
        (["-o", str(tmp_path / "r.csv"), "--exam", str(clip)], "one of the input clips"),
        (["-o", str(folder)], "is a folder"),
        (["-o", str(a_file / "r.csv")], "is a file, not a folder"),
    ]
    for extra, reason in cases:
        out = lusviewer("score", str(clip), "--model", str(tiny_model), "-q", *extra)
        assert out.returncode == 2 and reason in out.stderr, (extra, out.stderr)
        assert "Traceback" not in out.stderr
    assert clip.read_bytes() == original


def test_report_pair_is_replaced_together_or_not_at_all(tmp_path: Path) -> None:
    from lusviewer.report import ReportWriter

    report = tmp_path / "r.csv"
    report.write_text("OLD\n")
    (tmp_path / "r_clips.csv").mkdir()  # the second rename must fail
    with ReportWriter(report) as w, pytest.raises(OSError):
        w.commit()
    assert report.read_text() == "OLD\n"  # the earlier report is back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r_clips.csv"]  # no temporary files left


def test_exam_counts_an_input_that_fails_twice_once(tmp_path: Path, tiny_model: Path, synthetic_clip: Path) -> None:
    """The exam's bookkeeping is the viewer's (report.ExamSession): a clip listed twice
    that cannot be scored lacks one zone, not two (the exam has each clip once)."""
    bad = tmp_path / "L2.mp4"
    bad.write_bytes(b"")
    exam = tmp_path / "exam.csv"
    out = lusviewer(
        "score", str(synthetic_clip), str(bad), str(bad), "--model", str(tiny_model),
        "-o", str(tmp_path / "r.csv"), "--exam", str(exam), "-q",
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "1 input could not be scored" in out.stderr  # the second is the same file: said, scored once
    assert "given before; scored once" in out.stderr
    assert "; 1 clip could not be scored (not in the total)" in out.stderr, out.stderr
    assert read_csv(exam)[1][-1]["zone"].endswith("; 1 more could not be scored")


def test_choices_come_from_the_code_and_each_parser_equals_the_full_one() -> None:
    """The options' choices are the constants the code checks them against; the parser
    that run() builds for one subcommand gives that subcommand the same options and help."""
    import argparse

    from lusviewer.cli import SUBCOMMANDS, build_parser
    from lusviewer.inference.engine import PRECISIONS
    from lusviewer.model.hybrid import VARIANTS
    from lusviewer.report import PROTOCOLS, RULES

    def subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        action = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        return dict(action.choices)

    full = subparsers(build_parser())
    choices = {name: {a.dest: a.choices for a in p._actions if a.choices} for name, p in full.items()}
    assert choices["score"]["precision"] == PRECISIONS and choices["score"]["rule"] == ("auto", *RULES)
    assert choices["score"]["exam_zones"] == sorted(PROTOCOLS) and choices["evaluate"]["rule"] == ("auto", *RULES)
    assert choices["train"]["variant"] == VARIANTS
    assert full["crossval"].get_default("variants") == ",".join(VARIANTS[:3])
    for name in SUBCOMMANDS:
        alone = subparsers(build_parser(only=name))
        assert alone[name].format_help() == full[name].format_help()
        assert all(len(p._actions) == 1 for other, p in alone.items() if other != name)  # -h alone


def test_version_and_help_import_no_torch() -> None:
    code = (
        "import sys\nfrom lusviewer.cli import run\n"
        "for argv in (['--version'], ['--help']):\n"
        "    try:\n        run(argv)\n    except SystemExit:\n        pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "False", out.stdout + out.stderr


@pytest.mark.parametrize(
    ("argv", "target", "said"),
    [
        (
            ["train", "--data", "d"],
            "lusviewer.training.train.run_training",
            "interrupted; rerun the same command to resume",
        ),
        (["score", "a.mp4"], "lusviewer.io.find_clips", "interrupted"),
    ],
)
def test_interrupted_says_whether_a_rerun_resumes(
    argv: list[str],
    target: str,
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lusviewer.cli import run

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(target, interrupted)
    assert run(argv) == 130
    assert capsys.readouterr().err == f"lusviewer: {said}\n"


#: Cell values a spreadsheet would run as formulas, and a name that is not UTF-8.
HOSTILE = ('=HYPERLINK("http://x","y")', "+1+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "bad\udcffname.mp4")


def _csv_cells(folder: Path) -> list[str]:
    cells = []
    for f in sorted(folder.glob("*.csv")):
        text = f.read_bytes().decode("utf-8")  # valid UTF-8 even for a name that is not
        cells += [c for row in csv.reader(text.splitlines(keepends=True)) for c in row]
    return cells


def test_training_csvs_neutralise_formulas_and_keep_values(tmp_path: Path) -> None:
    """evaluate's metrics/auc/clips/patients.csv and crossval's predictions.csv go
    through the safe writer: no cell starts like a formula, the values are exact
    otherwise (unescape_cell gives them back), a name that is not UTF-8 is kept."""
    from lusviewer.report.csvsafe import FORMULA_STARTS, unescape_cell
    from lusviewer.training.crossval import _out_of_fold_sections
    from lusviewer.training.evaluate import METRICS, EvalResult, _write_tables
    from lusviewer.training.train import TrainConfig

    m = {"n": 4.0, **{k: 0.5 for k in METRICS}}
    clips: list[dict[str, object]] = [
        {"clip": name, "patient": name, "expert_score": i % 4, "clip_score": (i + 1) % 4, "risk_ge1": -0.25}
        for i, name in enumerate(HOSTILE)
    ]
    result = EvalResult(
        model=HOSTILE[0],
        rule="persistent",
        frame=m,
        clip=m,
        frame_confusion=np.zeros((4, 4), int),
        clip_confusion=np.zeros((4, 4), int),
        n_clips=len(clips),
        auc={"auc_ge1": 0.5, "auc_ge2": 0.5, "auc_ge3": 0.5},
        clips=clips,
    )
    (tmp_path / "eval").mkdir()
    _write_tables(result, tmp_path / "eval")
    rows = [{"clip": n, "group": n, "score": 1, "pred": 2, "risk": [0.5, 0.3, 0.1]} for n in HOSTILE]
    results = [{"fold": 0, "variant": "cnn", "auc": {"auc_ge1": 0.5}, "clips": rows}]
    (tmp_path / "cv").mkdir()
    cfg = TrainConfig(data="", out=str(tmp_path / "cv"))
    _out_of_fold_sections(results, tmp_path / "cv", cfg=cfg, variants=("cnn",), names={"cnn": "cnn"})
    for folder, files in (("eval", {"metrics", "auc", "clips", "patients"}), ("cv", {"predictions"})):
        assert files <= {f.stem for f in (tmp_path / folder).glob("*.csv")}
        cells = _csv_cells(tmp_path / folder)
        live = [c for c in cells if c.startswith(FORMULA_STARTS) and not c.lstrip("+-").replace(".", "").isdigit()]
        assert not live, live
        values = {unescape_cell(c) for c in cells}
        for name in HOSTILE:
            assert name.replace("\udcff", "\\udcff") in values, (folder, name)
        assert "-0.25" in cells or folder == "cv"  # a negative number stays a number


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``lusviewer ARGV`` in this process: (exit status, stderr)."""
    from lusviewer.cli import run

    capsys.readouterr()
    rc = run(list(argv))
    return rc, capsys.readouterr().err


def _assert_prefixed(stderr: str) -> None:
    assert "Traceback" not in stderr and "\x1b" not in stderr, stderr
    assert all(line.startswith("lusviewer: ") for line in stderr.splitlines()), stderr


@pytest.mark.parametrize("device", ["bogus", "mps", "cuda:x", "cuda:99"])
def test_an_unusable_device_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path, synthetic_clip: Path, device: str
) -> None:
    import torch

    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("mps is available here")
    rc, stderr = _run_cli(
        capsys,
        "score",
        str(synthetic_clip),
        "--model",
        str(tiny_model),
        "--device",
        device,
        "-o",
        str(tmp_path / "r.csv"),
    )
    assert rc == 2, stderr
    _assert_prefixed(stderr)
    assert stderr.count("\n") == 1 and f"--device {device}" in stderr, stderr
    assert not list(tmp_path.iterdir())


def _legacy_card(folder: Path) -> Path:
    """A tiny model whose weights carry no bound settings (saved before the binding)."""
    from safetensors.torch import load_file, save_file

    from lusviewer.model.weights import sha256_file

    card_path = make_tiny_model(folder)
    card = json.loads(card_path.read_text())
    weights = card_path.with_name(card["weights_file"])
    save_file(load_file(str(weights)), str(weights))  # no metadata
    card["sha256"] = sha256_file(weights)
    card_path.write_text(json.dumps(card))
    return card_path


def test_warnings_are_one_prefixed_line_each_and_said_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, synthetic_clip: Path
) -> None:
    """A legacy card's warning (said once, not again by its logger), pydicom's warnings on
    a DICOM with absurd values, and a clip shorter than its header (warned once by
    name, complete=no in the report): each one line starting with ``lusviewer:``."""
    card = _legacy_card(tmp_path / "legacy")
    grey = np.stack([np.full((16, 16), 40 * i, np.uint8) for i in range(5)])
    short = make_dicom(tmp_path / "short.dcm", grey, "MONOCHROME2", NumberOfFrames=6, FrameTime="40")
    odd = make_dicom(tmp_path / "odd.dcm", grey, "MONOCHROME2", FrameTime="1e-320")
    out = tmp_path / "r.csv"
    rc, stderr = _run_cli(
        capsys, "score", str(synthetic_clip), str(short), str(odd), "--model", str(card), "-o", str(out), "-q"
    )
    _assert_prefixed(stderr)
    assert stderr.count("not bound to its weights") == 1, stderr
    incomplete = [ln for ln in stderr.splitlines() if "incomplete" in ln]
    assert len(incomplete) == 1 and str(short) in incomplete[0] and "5" in incomplete[0], stderr
    assert incomplete[0].startswith("lusviewer: warning: ")
    _, rows = read_csv(tmp_path / "r_clips.csv")
    complete = {r["clip"]: r["complete"] for r in rows}
    assert complete[str(short)] == "no" and complete[str(synthetic_clip)] == "yes", (complete, stderr)
    assert rc in (0, 1), stderr


def test_search_problems_and_empty_folders_are_failed_inputs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path, synthetic_clip: Path
) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(synthetic_clip.read_bytes())
    (folder / "loop.mp4").symlink_to(folder / "loop.mp4")
    (folder / "new\nline.mp4").symlink_to(folder / "nowhere.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "r.csv"
    rc, stderr = _run_cli(capsys, "score", str(folder), str(empty), "--model", str(tiny_model), "-o", str(out), "-q")
    _assert_prefixed(stderr)
    lines = stderr.splitlines()
    assert rc == 1, stderr
    assert any("loop.mp4" in ln and ln.startswith("lusviewer: error: ") for ln in lines), stderr
    assert any("new\\nline.mp4" in ln for ln in lines), stderr  # escaped: no forged line
    assert any(str(empty) in ln and "no supported clips" in ln for ln in lines), stderr
    # the empty folder is an input; the loop and the broken link are files found in the folder given
    assert "1 input and 2 files in the folders given could not be scored" in stderr, stderr
    check_report(out, {str(folder / "good.mp4"): 40}, tiny_model)


def test_report_write_failures_are_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    tiny_model: Path,
    synthetic_clip: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A report that cannot be created, or whose disk fills while rows are added: one
    ``lusviewer: error:`` line naming it, exit 2, no temporary file left."""
    from lusviewer.report import csv_report

    out = tmp_path / "r.csv"
    real_open = open

    def full(file: object, mode: str = "r", *a: object, **k: object) -> object:
        if "w" in mode and ".tmp" in str(file):
            raise OSError(28, "No space left on device")
        return real_open(file, mode, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr(csv_report, "open", full, raising=False)
    rc, stderr = _run_cli(capsys, "score", str(synthetic_clip), "--model", str(tiny_model), "-o", str(out), "-q")
    assert rc == 2 and stderr.count("\n") == 1 and "No space left" in stderr and str(out) in stderr, stderr
    _assert_prefixed(stderr)
    monkeypatch.undo()

    def fail_add(self: object, result: object) -> None:
        raise csv_report.ReportError(f"{out}: the report could not be written (No space left on device)")

    monkeypatch.setattr(csv_report.ReportWriter, "add", fail_add)
    rc, stderr = _run_cli(capsys, "score", str(synthetic_clip), "--model", str(tiny_model), "-o", str(out), "-q")
    assert rc == 2 and stderr.count("\n") == 1 and "No space left" in stderr, stderr
    _assert_prefixed(stderr)
    assert not list(tmp_path.iterdir())


def test_stale_temporaries_of_dead_processes_are_removed_by_score(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path, synthetic_clip: Path
) -> None:
    import os

    dead = 4_000_000  # above Linux's pid_max: never a running process
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)
    stale = [tmp_path / f".r.csv.{dead}.tmp", tmp_path / f".r_clips.csv.{dead}.tmp"]
    for f in stale:
        f.write_bytes(b"")
    rc, stderr = _run_cli(
        capsys, "score", str(synthetic_clip), "--model", str(tiny_model), "-o", str(tmp_path / "r.csv"), "-q"
    )
    assert rc == 0, stderr
    assert not any(f.exists() for f in stale)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r.csv", "r_clips.csv"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1,x", "'x' is not a whole number; expected {noun} numbers such as"),
        ("-1", "there is no {noun} -1: {noun}s are numbered {span}"),
        ("", "no {noun} number; expected {noun} numbers such as"),
        (" , ", "no {noun} number; expected {noun} numbers such as"),
        ("0,1.5", "'1.5' is not a whole number"),
    ],
)
@pytest.mark.parametrize(
    ("command", "option", "noun", "span"),
    [
        (["crossval", "--data", "no-such-data", "-k", "3"], "--run-folds", "fold", "0..2"),
        (["crossval-report", "no-such-run"], "--repeats-only", "repeat", "from 0"),
    ],
)
def test_comma_lists_give_one_line_naming_the_option(
    capsys: pytest.CaptureFixture[str], command: list[str], option: str, noun: str, span: str, value: str, reason: str
) -> None:
    """--run-folds and --repeats-only share one parser; each bad list is one line naming the
    option, the value given and what is wrong with it, before any data is read."""
    rc, stderr = _run_cli(capsys, *command, f"{option}={value}")
    assert rc == 2
    _assert_prefixed(stderr)
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith(f"lusviewer: error: {option} {value!r}: "), stderr
    assert reason.format(noun=noun, span=span) in stderr, stderr


def test_run_folds_beyond_k_and_lists_that_parse(capsys: pytest.CaptureFixture[str]) -> None:
    from lusviewer.cli.common import number_list

    rc, stderr = _run_cli(capsys, "crossval", "--data", "no-such-data", "-k", "3", "--run-folds", "0,3")
    assert rc == 2 and "--run-folds '0,3': there is no fold 3: folds are numbered 0..2" in stderr, stderr
    assert number_list("--run-folds", " 2, 0,,2 ", noun="fold", example="0,1", size=3) == [0, 2]
    assert number_list("--repeats-only", "1", noun="repeat", example="0") == [1]


def test_a_trained_models_default_name_follows_its_variant() -> None:
    """`train --variant compact` wrote lusviewer-hybrid.json, a card named "lusviewer-hybrid"
    (and that name in every score report's model column) for a model that is no hybrid."""
    from lusviewer.cli import build_parser
    from lusviewer.cli.train import train_config

    def name(*extra: str) -> str:
        return str(train_config(build_parser().parse_args(["train", "--data", "d", *extra])).name)

    assert name() == "lusviewer-hybrid"  # the paper's hybrid, the default variant: as before
    assert name("--variant", "compact") == "lusviewer-compact"
    assert name("--variant", "cnn") == "lusviewer-cnn"
    assert name("--variant", "compact", "--name", "mine") == "mine"


def test_counts_are_in_words(capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path) -> None:
    """One clip is "1 clip", never "1 clips" or "clip(s)"; the CSV's columns are untouched."""
    from lusviewer.wording import count

    assert [count(n, "clip") for n in (0, 1, 2)] == ["0 clips", "1 clip", "2 clips"]
    assert count(1, "training patient") == "1 training patient" and count(3, "batch", "batches") == "3 batches"
    from lusviewer.training.loop import batches_per_epoch

    with pytest.raises(ValueError, match=r"^1 training frame per epoch \(1 training clip, --frames-per-clip 1\)"):
        batches_per_epoch(1, 32, clips=count(1, "training clip"), frames_per_clip=1, step="training")
    from lusviewer.io.synthetic import synthetic_frames

    frames = np.stack([f[:, :, 0] for f in synthetic_frames(3, size=32, seed=3)])
    one = make_dicom(tmp_path / "one.dcm", frames, "MONOCHROME2", FrameTime="50")
    report = tmp_path / "r.csv"
    rc, stderr = _run_cli(
        capsys, "score", str(one), str(tmp_path / "gone.mp4"), "--model", str(tiny_model), "-o", str(report)
    )
    assert rc == 1
    assert f"wrote {report} and {tmp_path / 'r_clips.csv'} (1 clip)" in stderr, stderr
    assert "lusviewer: 1 input could not be scored (see above)" in stderr, stderr


def test_info_does_not_call_a_compact_model_its_cnn_alone() -> None:
    """`lusviewer info` on a trained compact model listed its validation rows as "CNN alone",
    the hybrid's part: a compact model is its CNN, and its rows say so."""
    from lusviewer.cli import model_summary

    m = {"n": 6, **{k: 0.5 for k in ("accuracy", "macro_f1", "sensitivity", "specificity", "within_one", "qwk")}}
    metrics = {"cnn": {"frame": m, "clip": m}, "cnn_lstm": {"clip": m}}
    card = {"name": "x", "architecture": {"variant": "compact"}, "input": {"size": 64}, "sha256": "0" * 64}
    card |= {"weights_file": "x.safetensors", "metrics": {"cnn": metrics["cnn"]}}
    text = model_summary(card)
    assert "| the model (compact) | frame | 6 |" in text and "CNN alone" not in text
    hybrid = card | {"architecture": {"variant": "cnn_lstm"}, "metrics": metrics}
    assert "| CNN alone | clip | 6 |" in model_summary(hybrid) and "| CNN+LSTM | clip | 6 |" in model_summary(hybrid)


def test_a_truncated_single_frame_dicom_says_1_frame(tmp_path: Path) -> None:
    """The readers' lines count in words too: 'header says 1 frame', not '1 frame(s)'."""
    import pydicom

    from lusviewer.io import ClipError, open_clip

    path = make_dicom(tmp_path / "one.dcm", np.full((1, 16, 16), 90, np.uint8), "MONOCHROME2")
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:100]  # less than the one 256-byte frame
    ds.save_as(path)
    with pytest.raises(ClipError, match=r"header says 1 frame, pixel data holds none"):
        open_clip(path)
