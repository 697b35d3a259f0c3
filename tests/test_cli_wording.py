"""What the commands say is right: the closing count of ``score`` names files found in a
folder as files (not inputs), ``pretrain`` advises only options it takes, and a run's
machine line states the threads it used."""

from __future__ import annotations

from pathlib import Path

import pytest


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
