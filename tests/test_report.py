from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lusviewer.report import Exam, ExamEntry, write_exam_csv
from lusviewer.report.aggregate import persistence_frames, summarize_clip
from lusviewer.training.metrics import classification_metrics


def test_persistent_rule_ignores_flicker() -> None:
    scores = [0] * 20 + [3] + [1] * 10 + [0] * 5
    s = summarize_clip(scores, fps=25.0)
    assert s.clip_score == 1  # the lone 3 does not persist; the run of ten 1s does
    assert s.counts == (25, 10, 0, 1)
    assert 21 <= s.worst_frame <= 30
    assert "5 consecutive" in s.rule


def test_persistent_rule_counts_higher_scores_as_at_least() -> None:
    # 2,3,2,3,2: no five frames of 3, but five frames >= 2.
    s = summarize_clip([0, 0, 2, 3, 2, 3, 2, 0], fps=25.0)
    assert s.clip_score == 2


def test_short_clip_and_rules() -> None:
    assert persistence_frames(2, 25.0) == 2
    assert summarize_clip([3], fps=25.0).clip_score == 3
    probs = np.eye(4)[[1, 1, 2, 2, 2, 0]]
    assert summarize_clip(probs.argmax(1), probs, rule="majority").clip_score == 2
    assert summarize_clip([0, 1, 0], rule="max").clip_score == 1
    with pytest.raises(ValueError):
        summarize_clip([0], rule="mean")
    with pytest.raises(ValueError):
        summarize_clip([])


def test_metrics_match_sklearn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        t = rng.integers(0, 4, 200)
        p = np.where(rng.random(200) < 0.6, t, rng.integers(0, 4, 200))
        m = classification_metrics(t, p)
        assert m["accuracy"] == pytest.approx(sk.accuracy_score(t, p))
        assert m["macro_f1"] == pytest.approx(sk.f1_score(t, p, average="macro"))
        assert m["sensitivity"] == pytest.approx(sk.recall_score(t, p, average="macro"))
        assert m["qwk"] == pytest.approx(sk.cohen_kappa_score(t, p, weights="quadratic"))
        cm = sk.confusion_matrix(t, p)
        spec = np.mean(
            [(cm.sum() - cm[i].sum() - cm[:, i].sum() + cm[i, i]) / (cm.sum() - cm[i].sum()) for i in range(4)]
        )
        assert m["specificity"] == pytest.approx(spec)


def test_worst_frame_has_highest_expected_severity() -> None:
    probs = np.array([[0.9, 0.1, 0, 0], [0.5, 0.1, 0.1, 0.3], [0.8, 0.2, 0, 0], [0.6, 0.4, 0, 0]])
    s = summarize_clip(probs.argmax(1), probs, fps=25.0)
    assert s.clip_score == 0 and s.worst_frame == 1


def test_report_columns_keep_the_public_contract() -> None:
    """The issue's columns, in this order; new ones may only be appended."""
    from lusviewer.report import CLIP_COLUMNS, FRAME_COLUMNS

    assert FRAME_COLUMNS[:11] == (
        "clip", "frame", "time_s", "p0", "p1", "p2", "p3", "score", "recon_error", "model", "weights_sha256",
    )  # fmt: skip
    assert CLIP_COLUMNS[:12] == (
        "clip", "frames", "fps", "clip_score", "rule", "n0", "n1", "n2", "n3", "worst_frame", "model",
        "weights_sha256",
    )  # fmt: skip


def test_roc_auc_matches_sklearn_with_ties() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    from lusviewer.training.metrics import ordinal_aucs, roc_auc

    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.integers(0, 4, 40)
        risk = rng.integers(0, 5, (40, 3)) / 4  # coarse values: many ties
        ours = ordinal_aucs(y, risk)
        for k in (1, 2, 3):
            if 0 < (y >= k).sum() < len(y):
                assert ours[f"auc_ge{k}"] == pytest.approx(sk.roc_auc_score(y >= k, risk[:, k - 1]))
    assert np.isnan(roc_auc([True, True], [0.1, 0.2]))  # no negatives: undefined, not 0 or 1


def test_persistent_risk_ignores_a_flicker() -> None:
    from lusviewer.report.aggregate import persistent_risk

    calm = np.tile([0.9, 0.1, 0.0, 0.0], (50, 1))
    flicker = calm.copy()
    flicker[20] = [0.0, 0.0, 0.0, 1.0]  # one frame of score 3
    held = calm.copy()
    held[20:25] = [0.0, 0.0, 0.0, 1.0]  # 0.2 s of score 3 at 25 fps
    r_calm, r_flicker, r_held = (persistent_risk(p, 25.0) for p in (calm, flicker, held))
    assert r_calm == pytest.approx([0.1, 0.0, 0.0])
    assert r_flicker[2] == pytest.approx(0.2)  # averaged over 5 frames
    assert r_held[2] == pytest.approx(1.0)
    assert r_held.shape == (3,)
    assert persistent_risk(calm[:2], 25.0).shape == (3,)  # shorter than the window: the whole clip


def test_bootstrap_takes_any_metric() -> None:
    from lusviewer.training.metrics import AUC_KEYS, bootstrap_by_group, ordinal_aucs

    rng = np.random.default_rng(0)
    groups = [str(i // 3) for i in range(30)]
    y = rng.integers(0, 4, 30)
    risk = np.clip(y[:, None] / 3 + rng.normal(0, 0.3, (30, 3)), 0, 1)
    per_clip = [(np.array([t]), r[None, :]) for t, r in zip(y, risk, strict=True)]
    ci = bootstrap_by_group(groups, per_clip, reps=300, keys=AUC_KEYS, metric=ordinal_aucs)
    point = ordinal_aucs(y, risk)
    for key in AUC_KEYS:
        lo, hi = ci[key]
        assert 0.5 < lo <= point[key] <= hi <= 1


def _entry(clip: str, score: int, unfamiliar: bool | None = False, sha: str = "a" * 64) -> ExamEntry:
    return ExamEntry(clip, clip.split("/")[-1].split(".")[0], score, 100, 7, unfamiliar, "m 1", sha)


def test_a_withheld_zone_never_agrees_with_the_clinician() -> None:
    """Seen in the viewer: R3 (noise, withheld, "No reliable score") counted as agreeing
    because the model's unshown output happened to equal the clinician's score."""
    exam = Exam()
    exam.add(_entry("x/R3.mp4", 1, unfamiliar=True))
    exam.add(_entry("x/L1.mp4", 0))
    exam.set_clinician_score("x/R3.mp4", 1)
    exam.set_clinician_score("x/L1.mp4", 0)
    assert exam.n_agree == 1 and "agrees on 1 of 2" in exam.summary()


def test_exam_total_replaces_rescored_clips_and_says_what_weakens_it(tmp_path: Path) -> None:
    import csv

    exam = Exam()
    assert exam.summary() == "No clip in the exam yet"
    with pytest.raises(ValueError):
        write_exam_csv(tmp_path / "empty.csv", exam)
    for clip, score in (("x/L1.mp4", 1), ("x/L2.mp4", 3), ("x/R1.mp4", 0)):
        exam.add(_entry(clip, score))
    exam.add(_entry("x/L2.mp4", 2))  # scored again: replaced, not added
    assert len(exam) == 3 and exam.total == 3 and exam.maximum == 9
    assert [e.zone for e in exam.entries] == ["L1", "L2", "R1"]  # first-scored order kept
    assert exam.summary() == "LUS score 3 of 9 (3 zones)"
    exam.add(_entry("x/R2.mp4", 3, unfamiliar=True, sha="b" * 64))
    # unlike the training clips: withheld, left out of the total, which is then incomplete (issue 17)
    assert exam.summary() == (
        "LUS score 3 of 12, INCOMPLETE: 1 zone with no reliable score (unlike the training clips; not in total); "
        "scored by 2 different models"
    )
    path = write_exam_csv(tmp_path / "exam.csv", exam)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["clip_score"] for r in rows] == ["1", "2", "0", "3", "3"]
    assert rows[-1]["clip"] == "TOTAL" and rows[-1]["unfamiliar"] == "yes" and rows[-1]["model"] == "2 models"
    exam.remove("x/R2.mp4")
    exam.remove("not/in/exam.mp4")  # nothing to remove: no error
    assert exam.total == 3 and exam.models == ["a" * 64]
    exam.clear()
    assert len(exam) == 0 and "x/L1.mp4" not in exam


def test_exam_names_missing_zones_repeats_and_too_many_zones(tmp_path: Path) -> None:
    import csv

    exam = Exam()
    exam.add(_entry("a/L1.mp4", 2))
    exam.add(_entry("b/L1.mp4", 1))  # another file, the same zone name
    exam.not_scored.append("a/L2.mp4")
    assert exam.summary() == (
        "LUS score 3 of 6 (2 zones); 1 clip could not be scored (not in the total), zone L1 more than once, "
        "clips from 2 folders: one patient?"
    )
    with open(write_exam_csv(tmp_path / "e.csv", exam), newline="") as fh:
        total = list(csv.DictReader(fh))[-1]
    assert total["zone"].endswith("; 1 more could not be scored")
    for i in range(13):
        exam.add(_entry(f"c/Z{i}.mp4", 0))
    assert "more than the 14 zones of one exam" in exam.summary()
    exam.clear()
    assert exam.not_scored == [] and exam.summary() == "No clip in the exam yet"
    with pytest.raises(ValueError, match="not on the 0-3 scale"):
        _entry("a/L1.mp4", 4)


def test_low_confidence_frames() -> None:
    from lusviewer.report import LOW_CONFIDENCE, low_confidence

    probs = np.array([[0.9, 0.05, 0.03, 0.02], [0.3, 0.3, 0.2, 0.2], [0.5, 0.5, 0, 0], [np.nan] * 4], dtype=np.float32)
    assert LOW_CONFIDENCE == 0.5
    assert low_confidence(probs).tolist() == [False, True, False, False]  # unscored rows are not "weak"
    assert low_confidence(np.zeros((0, 4), np.float32)).shape == (0,)


def test_clinician_scores_in_the_exam(tmp_path: Path) -> None:
    import csv

    exam = Exam()
    for clip, score in (("x/L1.mp4", 1), ("x/L2.mp4", 3)):
        exam.add(_entry(clip, score))
    with pytest.raises(KeyError):
        exam.set_clinician_score("x/R9.mp4", 1)
    with pytest.raises(ValueError):
        exam.set_clinician_score("x/L1.mp4", 4)
    exam.set_clinician_score("x/L1.mp4", 1)
    assert (
        exam.clinician_total is None
        and exam.summary() == "LUS score 4 of 6 (2 zones); clinician 1 of 2 zones scored, agrees on 1 of 1"
    )
    exam.set_clinician_score("x/L2.mp4", 2)
    exam.add(_entry("x/L2.mp4", 2))  # scored again: the clinician's score stays
    assert exam.clinician_total == 3 and exam.n_agree == 2
    rows = list(csv.DictReader(write_exam_csv(tmp_path / "e.csv", exam).open(newline="")))
    assert [r["clinician_score"] for r in rows] == ["1", "2", "3"]
    assert rows[-1]["zone"].endswith("clinician total 3, agreeing with the model on 2 of 2 zones")
    exam.remove("x/L2.mp4")
    assert exam.clinician_score("x/L2.mp4") is None and exam.clinician_total == 1
    exam.set_clinician_score("x/L1.mp4", None)
    assert exam.n_clinician == 0 and "clinician" not in exam.summary()


def test_exam_protocol_sets_the_maximum_and_marks_incomplete_exams(tmp_path: Path) -> None:
    import csv

    exam = Exam(6)
    for clip, score in (("x/L1.mp4", 1), ("x/L2.mp4", 3)):
        exam.add(_entry(clip, score))
    assert exam.maximum == 18 and exam.missing_zones == 4
    assert exam.summary() == "LUS score 4 of 18, INCOMPLETE: 2 of 6 zones scored"
    rows = list(csv.DictReader(write_exam_csv(tmp_path / "e.csv", exam).open(newline="")))
    assert (
        "maximum 18, protocol of 6 zones" in rows[-1]["zone"] and "INCOMPLETE, 4 zones not scored" in rows[-1]["zone"]
    )
    exam.zones = None
    assert exam.maximum == 6 and exam.summary() == "LUS score 4 of 6 (2 zones)"
    with pytest.raises(ValueError):
        exam.zones = 7
    full = Exam(6)
    for k in range(7):
        full.add(_entry(f"x/Z{k}.mp4", 0))
    assert full.missing_zones == 0 and "more than the 6 zones of one exam" in full.summary()


# --- CSV injection, provenance columns, the writer's failures and leftovers (issue 16) ---


def _result(clip: str = "a.mp4", n: int = 6, *, model: str = "m 1", complete: bool | None = None, **kw: object):  # type: ignore[no-untyped-def]
    """A scored clip as the engine returns it (``complete=None``: a ClipInfo without the field)."""
    from types import SimpleNamespace

    from lusviewer.inference.engine import ClipResult
    from lusviewer.io import ClipInfo

    probs = np.full((n, 4), 0.1, dtype=np.float32)
    probs[:, 1] = 0.7
    info: object = ClipInfo(clip, n, 25.0, 64, 64, "video/mp4v")
    if complete is not None:
        info = SimpleNamespace(path=clip, frame_count=n, fps=25.0, width=64, height=64, complete=complete)
    fields: dict[str, object] = {
        "info": info,
        "clip": clip,
        "probs": probs,
        "scores": probs.argmax(1),
        "recon_error": np.full(n, 0.05, dtype=np.float32),
        "summary": summarize_clip(probs.argmax(1), probs, fps=25.0),
        "model_name": model,
        "weights_sha256": "b" * 64,
        "device": "cpu",
        "precision": "fp32",
        "elapsed_s": 0.1,
    }
    fields.update(kw)
    return ClipResult(**fields)  # type: ignore[arg-type]


def _rows(path: Path) -> list[list[str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-inf", "'-inf"),
        ("-0.25", "-0.25"),
        ("+3", "+3"),
        ("-1e-05", "-1e-05"),
        ("a=b", "a=b"),
        ("clips/=x.mp4", "clips/=x.mp4"),
        ("", ""),
        (None, ""),
        (-3, "-3"),
        (-0.5, "-0.5"),
    ],
)
def test_csv_cell_follows_owasp_and_keeps_numbers(value: object, written: str) -> None:
    from lusviewer.report.csvsafe import csv_cell, unescape_cell

    assert csv_cell(value) == written
    if isinstance(value, str):
        assert unescape_cell(csv_cell(value)) == value


def test_no_live_formula_in_the_report_or_the_exam(tmp_path: Path) -> None:
    """A clip named like a formula, a model named like one: every text cell of the frame
    report, the clip report and the exam CSV is neutralised; numbers stay numbers."""
    from lusviewer.report import write_report
    from lusviewer.report.csvsafe import FORMULA_STARTS

    bad = '=HYPERLINK("evil";"click")+cmd|x.mp4'
    r = _result(bad, model="@evil 1", recon_error=np.full(6, -0.5, dtype=np.float32))
    frames, clips = write_report(tmp_path / "r.csv", [r])
    exam = Exam()
    exam.add(ExamEntry.from_result(r))
    exam_csv = write_exam_csv(tmp_path / "exam.csv", exam)
    for path in (frames, clips, exam_csv):
        rows = _rows(path)
        cells = [c for row in rows[1:] for c in row]
        live = [c for c in cells if c.startswith(FORMULA_STARTS) and not c.lstrip("+-").replace(".", "").isdigit()]
        assert not live, (path.name, live)
        assert "'" + bad in cells
    f = _rows(frames)
    assert f[1][0] == "'" + bad and f[1][FRAME_COLUMNS_INDEX["model"]] == "'@evil 1"
    assert f[1][FRAME_COLUMNS_INDEX["recon_error"]] == "-0.500000"  # a negative number stays a number
    e = _rows(exam_csv)
    assert e[1][1] == "'" + Path(bad).stem  # the zone: the bare file stem


FRAME_COLUMNS_INDEX = {"model": 9, "recon_error": 8}


def test_clip_report_appends_complete_device_precision(tmp_path: Path) -> None:
    from lusviewer.report import CLIP_COLUMNS, write_report

    assert CLIP_COLUMNS[15:18] == ("complete", "device", "precision")
    assert CLIP_COLUMNS[12:15] == ("recon_error_mean", "unfamiliar", "low_confidence_frames")
    old = _result("old.mp4")  # a ClipInfo without `complete` (before the reader had it): yes
    cut = _result("cut.mp4", complete=False, device="cuda", precision="bf16")
    _, clips = write_report(tmp_path / "r.csv", [old, cut])
    rows = [dict(zip(_rows(clips)[0], row, strict=True)) for row in _rows(clips)[1:]]
    assert [(r["complete"], r["device"], r["precision"]) for r in rows] == [
        ("yes", "cpu", "fp32"),
        ("no", "cuda", "bf16"),
    ]


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    """kill -9 leaves .r.csv.PID.tmp and .r_clips.csv.PID.tmp: the next run removes them,
    and only them (a live process's files and other names stay)."""
    import subprocess
    import sys

    from lusviewer.report import ReportWriter

    dead = _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [tmp_path / f".{name}.{dead}.tmp" for name in ("r.csv", "r_clips.csv", "e.csv")]
        kept = [
            tmp_path / f".r.csv.{live.pid}.tmp",  # a run still going
            tmp_path / f".other.csv.{dead}.tmp",  # another file's
            tmp_path / f".r.csv.{dead}.tmp.keep",
            tmp_path / ".r.csv.x1.tmp",
            tmp_path / f".r.csv.{dead}.bak",  # the only copy of an earlier report (r.csv is absent)
        ]
        for f in stale + kept:
            f.write_bytes(b"")
        with ReportWriter(tmp_path / "r.csv") as w:
            w.add(_result())
            w.commit()
        exam = Exam()
        exam.add(ExamEntry.from_result(_result()))
        write_exam_csv(tmp_path / "e.csv", exam)
        assert not [f for f in stale if f.exists()]
        assert all(f.exists() for f in kept)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == sorted(
            f.name for f in kept if f.name.endswith(".tmp")
        )
    finally:
        live.kill()
        live.wait()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to fill a disk")
def test_disk_full_is_one_clean_error_and_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing: one ReportError (an OSError) naming the report; discard()
    afterwards does not raise; no .r.csv.PID.tmp is left; an earlier report is kept."""
    import builtins

    from lusviewer.report import csv_report

    (tmp_path / "r.csv").write_text("earlier\n")
    real_open = builtins.open

    def full_disk_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(file).endswith(".tmp"):
            real_open(file, mode, *args, **kwargs).close()  # the temporary file exists, as on a full disk
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(csv_report, "open", full_disk_open, raising=False)
    for n_frames in (2000, 2):  # ENOSPC from add() (buffer flushed), then from commit() (at close)
        with pytest.raises(csv_report.ReportError) as err, csv_report.ReportWriter(tmp_path / "r.csv") as w:
            w.add(_result(n=n_frames))
            w.commit()
        assert isinstance(err.value, OSError)
        assert str(tmp_path / "r.csv") in str(err.value) and "No space left" in str(err.value)
        assert "\n" not in str(err.value)
        w.discard()  # again: never raises
        assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]
        assert (tmp_path / "r.csv").read_text() == "earlier\n"


def test_writer_cannot_open_is_a_report_error(tmp_path: Path) -> None:
    from lusviewer.report import csv_report

    (tmp_path / "file").write_text("")
    with pytest.raises(csv_report.ReportError, match="cannot be written"):
        csv_report.ReportWriter(tmp_path / "file" / "r.csv")
    with pytest.raises(csv_report.ReportError, match="too long"):
        csv_report.ReportWriter(tmp_path / ("r" * 250 + ".csv"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_output_problem_refuses_special_and_impossible_outputs(tmp_path: Path) -> None:
    """Devices, FIFOs, empty and too-long names, /proc, symlink loops: a problem string,
    never a traceback and never a replaced special file."""
    import os

    from lusviewer.report import clips_path_for, output_problem

    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.mp4"
    loop.symlink_to(loop)
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.symlink_to(b)
    b.symlink_to(a)
    cases = {
        "/dev/null": "not a regular file",
        str(fifo): "not a regular file",
        "": "empty",
        str(tmp_path / ("r" * 245 + ".csv")): "too long",
        str(tmp_path / ("r" * 248)): "too long",
        "/proc/x/r.csv": "cannot create a file in /proc",
        str(loop): "cannot be resolved",
        str(tmp_path): "folder",
    }
    for out, expected in cases.items():
        problem = output_problem(out, inputs=[str(loop), str(a)])
        assert problem is not None and expected in problem, (out, problem)
        assert "\n" not in problem
    # A report beside symlink loops given as inputs is fine (the inputs fail on their own).
    assert output_problem(tmp_path / "r.csv", inputs=[str(loop), str(a), str(tmp_path)]) is None
    assert output_problem(tmp_path / "new" / "r.csv") is None
    assert clips_path_for("") == Path("_clips.csv")  # no ValueError before output_problem says why
    # The longest name that still works, with its _clips file and temporary names.
    ok = tmp_path / ("r" * (255 - len("..1234567.tmp") - len("_clips.csv")) + ".csv")
    assert output_problem(ok) is None
    assert output_problem(clips_path_for(ok)) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "fifo.csv", "loop.mp4"]


def test_a_file_name_that_is_not_utf8_is_written_not_lost(tmp_path: Path) -> None:
    """A clip whose name is not UTF-8 (surrogates in Python) used to raise UnicodeEncodeError
    in the writer; its row is written, the byte escaped, and the CSVs stay valid UTF-8."""
    import os

    from lusviewer.report import write_report

    name = os.fsdecode(b"clips/scan\xff.mp4")
    r = _result(name)
    frames, clips = write_report(tmp_path / "r.csv", [r])
    exam = Exam()
    exam.add(ExamEntry.from_result(r))
    exam_csv = write_exam_csv(tmp_path / "e.csv", exam)
    for path in (frames, clips, exam_csv):
        assert _rows(path)[1][0] == "clips/scan\\udcff.mp4"  # read back as strict UTF-8
