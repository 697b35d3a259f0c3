"""What a researcher met on the command line: training that silently never took a step,
reports written where nobody said, and failures not worded as errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_training import blues_like_folder


@pytest.fixture(scope="module")
def blues_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return blues_like_folder(tmp_path_factory.mktemp("blues"))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from lusviewer.cli import run

    capsys.readouterr()
    rc = run(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_training_that_cannot_fill_one_batch_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, blues_like: Path
) -> None:
    # About 12 training clips x 1 frame per clip < one batch of 32: every epoch used to
    # run no step at all, log "train loss 0.0000" and write the untrained model as trained.
    rc, _, err = _run(
        capsys,
        "train",
        "--data",
        str(blues_like),
        "--tiny",
        "--cnn-epochs",
        "1",
        "--lstm-epochs",
        "1",
        "--frames-per-clip",
        "1",
        "--threads",
        "1",
        "--work-dir",
        str(tmp_path / "w"),
        "--out",
        str(tmp_path / "model"),
    )
    assert rc == 2, err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "do not fill one batch of 32" in lines[0] and "--batch-size" in lines[0], err
    assert not list((tmp_path / "model").glob("*.safetensors"))


@pytest.mark.parametrize(
    "argv",
    [
        ["crossval-report", "{tmp}/none"],
        ["crossval-report", "{tmp}", "--bootstrap", "5"],
        ["crossval", "--data", "{tmp}", "--tiny", "--repeats", "0", "--out", "{tmp}/cv"],
        ["crossval", "--data", "{tmp}", "--tiny", "--variants", "nope", "--out", "{tmp}/cv"],
        ["calibrate", "--cv", "{tmp}/none", "--model", "{tmp}/none.json"],
        ["evaluate", "--data", "{tmp}", "--model", "{tmp}/none.json", "-o", "{tmp}/e"],
        ["score", "{tmp}", "--model", "{tmp}/none.json", "-o", "{tmp}/r.csv"],
    ],
)
def test_a_failed_command_says_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]) -> None:
    # Each of these used to print "lusviewer: <reason>" (no "error:"), unlike every other
    # failure, so a script looking for "lusviewer: error:" missed them.
    rc, _, err = _run(capsys, *(a.format(tmp=tmp_path) for a in argv))
    assert rc == 2
    assert err.splitlines() and all(line.startswith("lusviewer: error: ") for line in err.splitlines()), err


def test_a_clip_given_twice_is_scored_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path, synthetic_clip: Path
) -> None:
    import csv
    import shutil

    folder = tmp_path / "exam"
    folder.mkdir()
    clip = folder / "patient_1_L1.mp4"
    shutil.copy(synthetic_clip, clip)
    (tmp_path / "link.mp4").symlink_to(clip)
    inputs = [str(folder), str(clip), str(folder / ".." / "exam" / clip.name), str(tmp_path / "link.mp4")]
    rc, _, err = _run(capsys, "score", *inputs, "--model", str(tiny_model), "-o", str(tmp_path / "r.csv"), "-q")
    assert rc == 0, err
    with open(tmp_path / "r_clips.csv", newline="") as fh:
        assert [r["clip"] for r in csv.DictReader(fh)] == [str(clip)]  # it used to be 4 rows of one clip
    said = [line for line in err.splitlines() if "given before; scored once" in line]
    assert len(said) == 3 and all(line.startswith("lusviewer: warning: ") for line in said), err


def test_an_incomplete_clip_is_marked_in_the_exam(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path, synthetic_clip: Path
) -> None:
    import csv
    import shutil

    from corpus import index_frames, write_cv2

    folder = tmp_path / "exam"
    folder.mkdir()
    shutil.copy(synthetic_clip, folder / "patient_1_L1.mp4")
    whole = write_cv2(tmp_path / "whole.avi", "MJPG", index_frames(40, 96, 64))
    assert whole is not None
    data = whole.read_bytes()
    (folder / "patient_1_L2.avi").write_bytes(data[: len(data) // 2])  # cut short: about 20 of 40 frames
    exam = tmp_path / "exam.csv"
    rc, _, err = _run(
        capsys, "score", str(folder), "--model", str(tiny_model), "-o", str(tmp_path / "r.csv"), "--exam", str(exam)
    )
    assert rc == 0, err
    with open(exam, newline="") as fh:
        rows = {Path(r["clip"]).stem: r for r in csv.DictReader(fh)}
    # The exam counted the cut clip's score with nothing to say it was scored on half its frames.
    assert (rows["patient_1_L1"]["complete"], rows["patient_1_L2"]["complete"], rows["TOTAL"]["complete"]) == (
        "yes",
        "no",
        "no",
    )
    assert "1 clip incomplete (scored on the frames present)" in err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["train", "--batch-size", "0"], "--batch-size 0"),  # a ZeroDivisionError traceback after decoding
        (["train", "--batch-size", "-4"], "--batch-size -4"),  # trained nothing, wrote the model
        (["train", "--input-size", "0"], "--input-size 0"),
        (["train", "--width", "0"], "--width 0"),
        (["train", "--lr", "nan"], "--lr nan"),
        (["train", "--lstm-epochs", "0"], "--lstm-epochs"),  # failed after stage 1: lstm_best.safetensors missing
        (["crossval", "-k", "1"], "-k 1"),
        (["pretrain", "--epochs", "0"], "--epochs 0"),
    ],
)
def test_impossible_training_options_are_refused_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], flag: str
) -> None:
    out = str(tmp_path / ("w.safetensors" if argv[0] == "pretrain" else "out"))
    rc, _, err = _run(capsys, argv[0], "--data", str(tmp_path / "none"), "--tiny", *argv[1:], "--out", out)
    assert rc == 2 and err.startswith(f"lusviewer: error: {flag}") and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("option", ["-o", "--exam"])
def test_a_report_never_replaces_a_clip_that_is_not_an_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_model: Path, synthetic_clip: Path, option: str
) -> None:
    import shutil

    other = tmp_path / "patient_1_L2.mp4"  # meant as a second input, typed after -o / --exam
    shutil.copy(synthetic_clip, other)
    before = other.read_bytes()
    argv = ["score", str(synthetic_clip), "--model", str(tiny_model), "-q", "-o", str(tmp_path / "r.csv")]
    rc, _, err = _run(capsys, *argv, option, str(other))
    assert rc == 2 and "clip's or image's extension (.mp4)" in err, err
    assert other.read_bytes() == before  # it used to be replaced by the CSV


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--batch-size", "0"], "--batch-size 0: must be at least 1"),  # a traceback once the data was read
        (["--bootstrap", "5"], "--bootstrap 5: use 0"),  # '95 % intervals' from 5 resamples
        (["--bootstrap", "-1"], "--bootstrap -1: use 0"),
    ],
)
def test_evaluate_refuses_impossible_options_before_any_work(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    blues_like: Path,
    tiny_model: Path,
    option: list[str],
    said: str,
) -> None:
    argv = ["evaluate", "--data", str(blues_like), "--model", str(tiny_model), "-o", str(tmp_path / "e"), "-q"]
    rc, _, err = _run(capsys, *argv, *option)
    assert rc == 2 and err.startswith(f"lusviewer: error: {said}") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "e").exists()


def test_score_names_the_option_of_a_bad_batch_size(capsys: pytest.CaptureFixture[str], synthetic_clip: Path) -> None:
    rc, _, err = _run(capsys, "score", str(synthetic_clip), "--batch-size", "0", "-q")
    assert rc == 2 and err == "lusviewer: error: --batch-size 0: must be at least 1\n", (
        err
    )  # was "batch_size must be >= 1"


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`lusviewer info | head -1`: the pipe closes before lusviewer writes; no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "lusviewer", "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the interpreter has even started: every write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
