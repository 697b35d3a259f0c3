"""What the commands say is right: the closing count of ``score`` names files found in a
folder as files (not inputs), ``pretrain`` advises only options it takes, and a run's
machine line states the threads it used."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from lusviewer.io.synthetic import synthetic_frames, write_video


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    from lusviewer.cli import run

    capsys.readouterr()
    rc = run(list(argv))
    return rc, capsys.readouterr().err


def test_clips_failing_in_a_folder_given_are_files_not_inputs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path, synthetic_clip: Path
) -> None:
    """One folder given, two of its clips broken: "2 files in the folders given", not
    "2 inputs" (one input was given); a broken clip given by name is an input."""
    folder = tmp_path / "exam"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(synthetic_clip.read_bytes())
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.avi").write_text("not a video\n" * 50)
    named = tmp_path / "cut.mp4"
    named.write_bytes(synthetic_clip.read_bytes()[:300])
    out = tmp_path / "r.csv"
    rc, stderr = _run_cli(capsys, "score", str(folder), "--model", str(tiny_model), "-o", str(out), "-q")
    assert rc == 1, stderr
    assert "lusviewer: 2 files in the folders given could not be scored (see above)" in stderr, stderr
    assert "inputs could not" not in stderr
    rc, stderr = _run_cli(capsys, "score", str(folder), str(named), "--model", str(tiny_model), "-o", str(out), "-q")
    assert rc == 1, stderr
    assert "lusviewer: 1 input and 2 files in the folders given could not be scored" in stderr, stderr


def test_not_scored_line_counts_each_as_what_it_is(tmp_path: Path) -> None:
    from lusviewer.cli.common import not_scored_line

    sub = tmp_path / "frames"
    sub.mkdir()
    given = [str(tmp_path), "a.mp4", "b.mp4"]
    assert not_scored_line(given, ["a.mp4", "b.mp4"]).startswith("2 inputs could not be scored")
    assert not_scored_line(given, [str(tmp_path / "x.mp4")]).startswith("1 file in the folders given could")
    line = not_scored_line(given, ["a.mp4", str(sub), str(tmp_path / "x.mp4"), str(tmp_path / "y.mp4")])
    assert line.startswith("1 input and 2 files and 1 folder in the folders given could not be scored"), line


def _one_patient(root: Path) -> Path:
    (root / "videos").mkdir(parents=True)
    with open(root / "severity.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video_file", "Severity Score", "A-lines", "B-lines", "comments"])
        for k, point in enumerate(("L1", "R2")):
            write_video(root / "videos" / f"patient_1_{point}.mp4", synthetic_frames(6, size=40, seed=k))
            w.writerow([f"patient_1_{point}", f"{k}.0", "yes", "no", ""])
    return root


def test_pretrain_advises_only_what_pretrain_takes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """One patient cannot be split: the old advice, --val-fraction 0, is refused by pretrain."""
    data = _one_patient(tmp_path / "blues")
    out = str(tmp_path / "pre.safetensors")
    common = ["pretrain", "--data", str(data), "--out", out, "--work-dir", str(tmp_path / "work"), "--tiny"]
    rc, stderr = _run_cli(capsys, *common, "--val-fraction", "0")
    assert rc == 2 and "--val-fraction 0: must be between 0 and 1" in stderr, stderr  # pretrain takes no 0
    rc, stderr = _run_cli(capsys, *common, "--fp32", "--epochs", "1")
    assert rc == 2, stderr
    lines = [ln for ln in stderr.splitlines() if "cannot be split" in ln]
    assert len(lines) == 1, stderr
    assert "use data of at least 2 patients" in lines[0] and "use --val-fraction 0" not in lines[0], lines
    assert not Path(out).exists()


def test_machine_states_the_threads_used() -> None:
    """The cross-validation report's "trained on" (and the card's machine): a run with
    --threads 1 on 2 cores said "2 CPU cores", as if it had used both."""
    from lusviewer.training.loop import machine

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert machine(torch.device("cpu")).startswith("1 thread on "), machine(torch.device("cpu"))
        torch.set_num_threads(2)
        assert machine(torch.device("cpu")).startswith("2 threads on "), machine(torch.device("cpu"))
    finally:
        torch.set_num_threads(before)
