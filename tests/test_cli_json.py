"""``lusviewer score -o report.json``: the CSV report's fields in one JSON file, with the
same contract: a clip cut short says so, a withheld clip says so, and the inputs that
could not be scored are listed, so that a script reading only the JSON sees a partial run."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_dicom, make_tiny_model

from lusviewer.report import CLIP_COLUMNS, FRAME_COLUMNS
from lusviewer.report.json_report import PER_FRAME_KEYS, JsonReportWriter, clip_entry


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    from lusviewer.cli import run

    capsys.readouterr()
    rc = run(list(argv))
    return rc, capsys.readouterr().err


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _as_csv_text(value: Any) -> str:
    """A JSON value as the CSV writes it (null: empty; true/false: yes/no)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _same_number(json_value: Any, cell: str) -> bool:
    if isinstance(json_value, float):
        return json_value == float(cell)
    return _as_csv_text(json_value) == cell


@pytest.fixture
def short_dicom(tmp_path: Path) -> Path:
    """A DICOM whose header announces 6 frames and that holds 5: scored on the 5, incomplete."""
    grey = np.stack([np.full((32, 32), 40 * i, np.uint8) for i in range(5)])
    return make_dicom(tmp_path / "short.dcm", grey, "MONOCHROME2", NumberOfFrames=6, FrameTime="40")


def test_json_report_has_the_csv_fields_and_shows_partial_and_failed_clips(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path, synthetic_clip: Path, short_dicom: Path
) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    inputs = [str(synthetic_clip), str(short_dicom), str(bad)]
    rc_csv, _ = _run(capsys, "score", *inputs, "--model", str(tiny_model), "-o", str(tmp_path / "r.csv"), "-q")
    report = tmp_path / "r.json"
    rc, stderr = _run(capsys, "score", *inputs, "--model", str(tiny_model), "-o", str(report))
    assert rc == rc_csv == 1, stderr  # one input failed, as with the CSV
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("r")) == ["r.csv", "r.json", "r_clips.csv"]
    assert f"wrote {report} (2 clips)" in stderr, stderr
    doc = json.loads(report.read_text(encoding="utf-8"))
    assert doc["report"] == "lusviewer score report" and doc["format_version"] == 1
    # the failed input is in the file, with the reason said on stderr
    assert doc["all_scored"] is False
    [failed] = doc["not_scored"]
    assert failed["clip"] == str(bad) and failed["reason"].startswith(str(bad)) and failed["reason"] in stderr
    # each clip: the clip CSV's fields, the same values, typed; its frames: the frame CSV's
    by_clip = {c["clip"]: c for c in doc["clips"]}
    assert list(by_clip) == inputs[:2]
    csv_clips = {r["clip"]: r for r in _csv(tmp_path / "r_clips.csv")}
    csv_frames = _csv(tmp_path / "r.csv")
    for name, clip in by_clip.items():
        assert list(clip) == [*CLIP_COLUMNS, "per_frame"]
        row = csv_clips[name]
        for column in CLIP_COLUMNS:
            assert _same_number(clip[column], row[column]), (column, clip[column], row[column])
        frames = [r for r in csv_frames if r["clip"] == name]
        assert len(clip["per_frame"]) == clip["frames"] == len(frames)
        for got, want in zip(clip["per_frame"], frames, strict=True):
            assert tuple(got) == PER_FRAME_KEYS
            assert all(_same_number(got[k], want[k]) for k in PER_FRAME_KEYS), (got, want)
    # the clip cut short is marked as such, never a silent partial score
    short = by_clip[str(short_dicom)]
    assert short["complete"] is False and short["frames"] == 5
    assert by_clip[str(synthetic_clip)]["complete"] is True
    assert isinstance(short["clip_score"], int) and isinstance(short["fps"], float)
    assert short["unfamiliar"] is None  # the card gives no limit: null, as the CSV's empty cell


def test_json_report_marks_a_withheld_clip(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, synthetic_clip: Path
) -> None:
    strict = make_tiny_model(tmp_path / "strict", recon_error_limit=0.0)  # every clip unlike the training clips
    report = tmp_path / "out" / "withheld.JSON"  # the suffix in any case
    rc, stderr = _run(capsys, "score", str(synthetic_clip), "--model", str(strict), "-o", str(report), "-q")
    assert rc == 0, stderr
    doc = json.loads(report.read_text(encoding="utf-8"))
    assert doc["all_scored"] is True and doc["not_scored"] == []
    [clip] = doc["clips"]
    assert clip["confidence"] == "withheld" and clip["unfamiliar"] is True
    assert clip["recon_error_mean"] > 0 and clip["complete"] is True


def test_score_help_names_the_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    from lusviewer.cli import run

    with pytest.raises(SystemExit):
        run(["score", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "a name ending .json writes one JSON file instead" in text
    assert "the inputs that could not be scored, with the reason" in text


def test_rows_read_back_from_csv_parts_lose_the_formula_guard(tmp_path: Path) -> None:
    """The torchrun merge builds the JSON from the ranks' CSV parts: a cell the CSV guarded
    with a leading ' (a clip named =HYPERLINK...) is the clip's own name again in the JSON."""
    clip = ["'=cmd.mp4", "1", "25.000", "2", "persistent", "0", "0", "1", "0", "0", "m 1", "abc"]
    clip += ["", "", "1", "yes", "cpu", "fp32", "uncertain", "", ""]
    frame = ["'=cmd.mp4", "0", "0.0000", "0.1", "0.2", "0.6", "0.1", "2", "0.01", "m 1", "abc", "", ""]
    assert len(clip) == len(CLIP_COLUMNS) and len(frame) == len(FRAME_COLUMNS)
    entry = clip_entry([frame], clip, from_csv=True)
    assert entry["clip"] == "=cmd.mp4" and entry["recon_error_mean"] is None and entry["unfamiliar"] is None
    assert entry["per_frame"] == [
        {"frame": 0, "time_s": 0.0, "p0": 0.1, "p1": 0.2, "p2": 0.6, "p3": 0.1, "score": 2, "recon_error": 0.01}
        | {"p_a_lines": None, "p_b_lines": None}
    ]
    assert clip_entry([frame], clip)["clip"] == "'=cmd.mp4"  # rows made here are taken as they are
    out = tmp_path / "r.json"
    with JsonReportWriter(out) as w:
        w.add_rows([frame], clip, from_csv=True)
        w.not_scored("x.mp4", "x.mp4: cannot be opened")
    assert not out.exists() and not list(tmp_path.iterdir())  # not committed: nothing written, nothing left


def test_an_exam_named_json_is_refused_before_scoring(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path, synthetic_clip: Path
) -> None:
    """-o r.json writes JSON, so --exam e.json would read as JSON too; the exam is a CSV:
    refused in one line, before any scoring, nothing written."""
    exam = tmp_path / "e.json"
    argv = ["score", str(synthetic_clip), "--model", str(tiny_model), "-o", str(tmp_path / "r.json")]
    rc, stderr = _run(capsys, *argv, "--exam", str(exam))
    assert rc == 2 and stderr.splitlines() == [
        f"lusviewer: error: --exam {exam}: the exam is written as CSV only; name it .csv (the JSON report is -o)"
    ]
    assert not list(tmp_path.iterdir())


def test_a_disk_that_fills_is_one_line_and_leaves_nothing(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    tiny_model: Path,
    synthetic_clip: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The JSON is streamed clip by clip: a write that fails (disk full) while a clip is added
    is one error line naming the report, exit 2, no temporary file; an earlier report is kept."""
    import io

    from lusviewer.report import json_report

    out = tmp_path / "r.json"
    out.write_text("EARLIER\n")
    real_open = open

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            if '"per_frame"' in text:  # the header goes in; the first clip does not
                raise OSError(28, "No space left on device")
            return super().write(text)

    def opener(file: object, mode: str = "r", *a: object, **k: object) -> object:
        if "w" in mode and ".tmp" in str(file):
            real_open(file, mode, *a, **k).close()  # the temporary file exists, as it would
            return Full()
        return real_open(file, mode, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr(json_report, "open", opener, raising=False)
    rc, stderr = _run(capsys, "score", str(synthetic_clip), "--model", str(tiny_model), "-o", str(out), "-q")
    assert rc == 2 and stderr.splitlines() == [
        f"lusviewer: error: {out}: the report could not be written (No space left on device); no report written"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"] and out.read_text() == "EARLIER\n"
