"""The generated bad-input corpus (tests/corpus.py) through the command line (issue 16).

Every case is run TOGETHER with a good clip: in-process through ``lusviewer.cli.run``
(the code ``python -m lusviewer`` runs), in a child process so that a native crash or
a hang names its case, and a sample through the real ``python -m lusviewer``. Per
case: no crash, no hang, no traceback, every stderr line (file descriptor 2, so native
libraries' output counts too) starts with ``lusviewer:``, the good clip is in the
report (or, for an output or a model that is refused, exit 2 and no report), no
temporary file left, no CSV cell that starts like a formula unless escaped, and a clip
scored on fewer frames than it was made with is marked ``complete=no`` with a warning
line naming it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from corpus import Case, cli_corpus, index_frames, run_isolated, write_cv2

ROOT = Path(__file__).resolve().parent.parent
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _live_formulas(path: Path) -> list[str]:
    """Cells of the CSV ``path`` that a spreadsheet would run (escaped ones start with ')."""
    from lusviewer.report.csvsafe import _is_number

    with open(path, newline="", encoding="utf-8") as fh:
        return [c for row in csv.reader(fh) for c in row if c.startswith(FORMULA_STARTS) and not _is_number(c)]


def _temporaries(*folders: str) -> list[str]:
    found = []
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        found += [os.path.join(folder, n) for n in names if n.endswith((".tmp", ".bak"))]
    return found


#: Bad clips scored per run (each with the good clip): the run's model is loaded once.
GROUP = 10


def groups(cases: list[Case]) -> list[Case]:
    """The clip cases, GROUP at a time, as one case each (``path``: a JSON list)."""
    clips = [c for c in cases if c.kind == "clip"]
    return [
        Case(f"group:{i // GROUP}", json.dumps([c.path for c in clips[i : i + GROUP]]), kind="group")
        for i in range(0, len(clips), GROUP)
    ]


def _argv(case: Case, good: str, card: str, out: str) -> list[str]:
    if case.kind == "group":
        return ["score", good, *json.loads(case.path), "-o", out, "--model", card, "-q"]
    if case.kind == "output":
        return ["score", good, "-o", case.path, "--model", card, "-q"]
    if case.kind == "model":
        return ["score", good, "-o", out, "--model", case.path, "-q"]
    return ["score", good, case.path, "-o", out, "--model", card, "-q"]


def _report(out: str) -> dict[str, object]:
    """What the report ``out`` (and its _clips file) holds, as plain data."""
    from lusviewer.report import clips_path_for

    clips_path = clips_path_for(out)
    with open(clips_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {
        "clips": [{"clip": r["clip"], "frames": int(r["frames"]), "complete": r["complete"]} for r in rows],
        "live": _live_formulas(Path(out)) + _live_formulas(clips_path),
    }


def check_cli_case(case: Case) -> dict[str, object]:
    """Run ``lusviewer score GOOD CASE`` in this process; what happened, as plain data."""
    from lusviewer.cli import run

    good, card, work = os.environ["CORPUS_GOOD"], os.environ["CORPUS_CARD"], os.environ["CORPUS_WORK"]
    folder = tempfile.mkdtemp(dir=work)
    out = os.path.join(folder, "r.csv")
    argv = _argv(case, good, card, out)
    t0 = time.monotonic()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            try:
                rc = run(argv)
            except SystemExit as exc:  # argparse
                rc = exc.code if isinstance(exc.code, int) else 2
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        log.seek(0)
        stderr = log.read().decode("utf-8", "backslashreplace")
    report_at = case.path if case.kind == "output" else out
    elapsed = time.monotonic() - t0
    result: dict[str, object] = {"outcome": "ran", "rc": rc, "stderr": stderr[-6000:], "elapsed_s": elapsed}
    result["tmp"] = _temporaries(folder, os.path.dirname(report_at) or ".")
    if rc in (0, 1):
        try:
            result["report"] = _report(report_at)
        except OSError as exc:
            result["report_error"] = f"{type(exc).__name__}: {exc}"
    return result


def _problems(case: Case, r: dict[str, object], good: str) -> list[str]:
    """What is wrong with the outcome ``r`` of ``case`` (empty: all is well)."""
    from lusviewer.io import display_path
    from lusviewer.report.csvsafe import csv_cell

    if r.get("outcome") != "ran":
        return [f"{r.get('outcome')}: {r}"]
    rc, stderr = r["rc"], str(r["stderr"])
    problems = []
    if "Traceback" in stderr:
        problems.append(f"traceback: {stderr[-800:]}")
    lines = stderr.split("\n")
    bad_lines = [ln for ln in lines if ln and not ln.startswith("lusviewer: ")]
    if bad_lines or "\x1b" in stderr or "\r" in stderr:
        problems.append(f"unprefixed or raw stderr: {bad_lines[:3]!r} in {stderr[-600:]!r}")
    if rc not in (0, 1, 2):
        problems.append(f"exit status {rc}")
    if r.get("tmp"):
        problems.append(f"temporary files left: {r['tmp']}")
    if rc == 2:  # refused as a whole: one line saying why, before any report
        if case.kind == "clip" and "error: --" not in stderr:
            problems.append(f"a bad input ended the whole run (exit 2): {stderr[-400:]!r}")
        if not any(ln.startswith("lusviewer: error: ") or "cannot load the model" in ln for ln in lines):
            problems.append("exit 2 without an error line")
        return problems
    if case.kind in ("output", "model") and rc != 0:
        problems.append(f"exit {rc} for a good clip")
    report = r.get("report")
    if not isinstance(report, dict):
        return [*problems, f"no report: {r.get('report_error')}"]
    if report["live"]:
        problems.append(f"live formulas: {report['live'][:3]}")
    rows = {row["clip"]: row for row in report["clips"]}
    if csv_cell(good) not in rows:
        problems.append("the good clip is not in the report")
    if case.kind in ("clip",) and case.path != good:
        cell = csv_cell(case.path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
        row = rows.get(cell)
        said = [ln for ln in lines if display_path(case.path) in ln]
        if row is None and (rc != 1 or not said):
            problems.append(f"not scored, exit {rc}, and named in no line: {stderr[-300:]!r}")
        if row is not None:
            if case.intact and (row["frames"] != case.frames or row["complete"] != "yes"):
                problems.append(f"intact clip scored as {row}")
            short = case.frames is not None and row["frames"] < case.frames
            if (short or row["complete"] == "no") and not (
                row["complete"] == "no" and any("incomplete" in ln for ln in said)
            ):
                problems.append(f"incomplete clip scored silently: {row}, said {said}")
            if sum("incomplete" in ln for ln in said) > 1:
                problems.append(f"incomplete said more than once: {said}")
    return problems


Setup = tuple[list[Case], Path, Path, dict[str, str]]


@pytest.fixture(scope="module")
def corpus_setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return _setup(tmp_path_factory.mktemp("cli_corpus"))


def _setup(tmp_path: Path) -> Setup:
    from conftest import make_tiny_model

    card = make_tiny_model(tmp_path / "model")
    good = write_cv2(tmp_path / "good.mp4", "mp4v", index_frames(8))
    assert good is not None
    cases = cli_corpus(tmp_path / "corpus", card, good)
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "CORPUS_GOOD": str(good),
        "CORPUS_CARD": str(card),
        "CORPUS_WORK": str(work),
        "OMP_NUM_THREADS": "1",  # a tiny model: threads only cost here
    }
    return cases, card, good, env


def test_corpus_through_the_cli(corpus_setup: Setup) -> None:
    cases, _card, good, env = corpus_setup
    tmp_path = Path(env["CORPUS_WORK"]).parent
    assert len(cases) >= 400, len(cases)
    assert {c.kind for c in cases} == {"clip", "output", "model"}
    runs = groups(cases) + [c for c in cases if c.kind != "clip"]
    results = run_isolated(runs, "test_corpus_cli:check_cli_case", timeout_s=60, env=env, cwd=str(ROOT / "tests"))
    slow = sorted((float(r.get("elapsed_s", 0)), n) for n, r in results.items())[-5:]  # type: ignore[arg-type]
    print("slowest runs:", slow)
    of = {path: run.name for run in runs if run.kind == "group" for path in json.loads(run.path)}
    problems = []
    for c in cases:
        r = results.get(of.get(c.path, c.name) if c.kind == "clip" else c.name, {"outcome": "missing"})
        problems += [f"{c.name}: {p}" for p in _problems(c, r, str(good))]
    left = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".tmp")]
    assert not left, left
    assert not problems, "\n".join(problems[:40]) + f"\n({len(problems)} problems in {len(cases)} cases)"


#: Cases run through the real ``python -m lusviewer`` (clips: together in one run).
REAL_CLIPS = (
    "fs/fifo.mp4",
    "fs/loop_a.mp4",
    "fs/dir.mp4",
    "src/dib24.avi",
    "trunc/trunc500_mp4v.mp4",
    "dicom/raw_00181063_312d333230.dcm",
    "dicom/base6.dcm",
    "name:00",
    "name:04",
    "name:07",
    "name:14",
)
REAL_OTHERS = ("output:dev_null", "model:pickle_as_safetensors")


def _real(argv: list[str], folder: Path, report_at: str, env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "lusviewer", *argv], capture_output=True, cwd=ROOT, env=env, timeout=120, check=False
    )
    result: dict[str, object] = {
        "outcome": "ran" if proc.returncode >= 0 else "crash",
        "rc": proc.returncode,
        "stderr": proc.stderr.decode("utf-8", "backslashreplace") + proc.stdout.decode("utf-8", "backslashreplace"),
        "tmp": _temporaries(str(folder), os.path.dirname(report_at) or "."),
    }
    if proc.returncode in (0, 1):
        try:
            result["report"] = _report(report_at)
        except OSError as exc:
            result["report_error"] = str(exc)
    return result


def test_a_sample_of_the_corpus_through_the_real_command_line(corpus_setup: Setup, tmp_path: Path) -> None:
    cases, card, good, env = corpus_setup
    by_name = {c.name: c for c in cases}
    clips = [by_name[n] for n in REAL_CLIPS if n in by_name]
    assert len(clips) >= len(REAL_CLIPS) - 2, sorted(by_name)[:20]
    problems = []
    out = tmp_path / "real" / "r.csv"
    out.parent.mkdir()
    r = _real(
        ["score", str(good), *(c.path for c in clips), "-o", str(out), "--model", str(card), "-q"],
        out.parent,
        str(out),
        env,
    )
    problems += [f"{c.name}: {p}" for c in clips for p in _problems(c, r, str(good))]
    for i, name in enumerate(REAL_OTHERS):
        case = by_name[name]
        folder = tmp_path / f"real{i}"
        folder.mkdir()
        report_at = case.path if case.kind == "output" else str(folder / "r.csv")
        r = _real(_argv(case, str(good), str(card), str(folder / "r.csv")), folder, report_at, env)
        problems += [f"{name}: {p}" for p in _problems(case, r, str(good))]
    assert not problems, "\n".join(problems)
