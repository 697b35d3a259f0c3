"""``score``'s options given nonsense: refused before any work, in one line, exit 2
(they were taken silently: the exam or its zones were then missing from the output)."""

from __future__ import annotations

from pathlib import Path

import pytest


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    from lusviewer.cli import run

    capsys.readouterr()
    rc = run(list(argv))
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--exam", "--exam-report"])
@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_exam_name_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path, synthetic_clip: Path, flag: str, value: str
) -> None:
    """``--exam ''`` (a variable that was not set) ran as if no exam had been asked for."""
    out = tmp_path / "r.csv"
    rc, stderr = _run_cli(capsys, "score", str(synthetic_clip), "--model", str(tiny_model), "-o", str(out), flag, value)
    assert rc == 2, stderr
    assert stderr == f"lusviewer: error: {flag} {value!r}: an empty file name; name the file to write\n"
    assert not out.exists()


def test_a_zone_csv_that_does_not_exist_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path, synthetic_clip: Path
) -> None:
    """A mistyped ``--zone-from zones.csv`` was read as a regular expression that matched no
    clip: the exam was written with no zone from it, each clip only warned about."""
    out = tmp_path / "r.csv"
    missing = tmp_path / "zones.csv"
    argv = ["score", str(synthetic_clip), "--model", str(tiny_model), "-o", str(out), "-q"]
    rc, stderr = _run_cli(capsys, *argv, "--zone-from", str(missing), "--exam", str(tmp_path / "exam.csv"))
    assert rc == 2, stderr
    assert stderr == f"lusviewer: error: --zone-from {missing}: no such CSV file\n"
    assert not out.exists()
    missing.write_text(f"clip,zone\n{synthetic_clip},R2\n")  # once it exists, it is used
    rc, stderr = _run_cli(capsys, *argv, "--zone-from", str(missing), "--exam", str(tmp_path / "exam.csv"))
    assert rc == 0, stderr
    assert "R2" in (tmp_path / "exam.csv").read_text()


@pytest.mark.parametrize("command", ["evaluate", "train", "crossval", "pretrain"])
def test_a_group_by_that_is_no_regular_expression_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    """``--group-by '('`` was a traceback after the data were searched, or, with COVID-BLUeS
    data (whose patients come from severity.csv), not noticed at all: ``evaluate`` scored
    every clip."""
    from lusviewer.cli import run

    out = ["--out", str(tmp_path / ("m.safetensors" if command == "pretrain" else "out"))]
    argv = [command, "--data", str(tmp_path), "--group-by", "(", *(out if command != "evaluate" else [])]
    with pytest.raises(SystemExit) as info:
        run(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"lusviewer {command}: error: argument --group-by: '(' is not a regular expression "
        "(missing ), unterminated subpattern at position 0)"
    ), err


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "not a fold result that can be read (Expecting value"),
        (b"\xff\xfe", "not a fold result that can be read ('utf-8' codec can't decode"),
        (b'{"clips": [', "not a fold result that can be read (Expecting"),
        (b'{"clips": []}', "not a fold result of lusviewer crossval (no variant, fold); rerun that fold"),
        (
            b'{"clips": [{"clip": "a.mp4"}], "variant": "compact", "fold": 0}',
            "(1 clip row without all of clip, group, score, pred, risk); rerun that fold",
        ),
    ],
)
def test_crossval_report_names_a_damaged_fold_result(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, says: str
) -> None:
    """A result.json cut short, not UTF-8 or missing keys was a bare "Expecting value: line 1
    column 1 (char 0)" or a KeyError traceback, naming no file."""
    result = tmp_path / "run" / "fold0" / "compact" / "result.json"
    result.parent.mkdir(parents=True)
    result.write_bytes(content)
    rc, stderr = _run_cli(capsys, "crossval-report", str(tmp_path / "run"), "-o", str(tmp_path / "r.md"))
    assert rc == 2, stderr
    assert stderr.startswith(f"lusviewer: error: {result}: ") and says in stderr, stderr
    assert len(stderr.splitlines()) == 1, stderr


def test_ctrl_c_says_how_far_it_got_and_that_no_report_was_written(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    tiny_model: Path,
    synthetic_clip: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interrupted, ``score`` writes no report (whole or not at all; an earlier one is kept):
    it said only "interrupted", which left the clips scored so far unaccounted for."""
    from lusviewer.inference import ScoringEngine

    clips = []
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        clips.append(tmp_path / name)
        clips[-1].write_bytes(synthetic_clip.read_bytes())
    report = tmp_path / "r.csv"
    report.write_text("EARLIER\n")
    real = ScoringEngine.score_clip
    calls = []

    def score_clip(self: ScoringEngine, *a: object, **k: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(ScoringEngine, "score_clip", score_clip)
    rc, stderr = _run_cli(capsys, "score", *map(str, clips), "--model", str(tiny_model), "-o", str(report), "-q")
    assert rc == 130, stderr
    assert stderr.splitlines()[-2:] == [
        "lusviewer: stopped after 1 of 3 clips: no report written; an earlier report there is kept",
        "lusviewer: interrupted",
    ], stderr
    assert report.read_text() == "EARLIER\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "c.mp4", "r.csv"]
