"""Keep a cross-validation's fold results in the repository without the data's labels,
and put them back, so that a later session resumes the run instead of retraining.

    python scripts/cv_results.py export RUN_DIR DEST     # RUN_DIR: a `lusviewer crossval --out`
    python scripts/cv_results.py restore DEST RUN_DIR --data ../shared/data/covid-blues

``export`` copies every finished fold's ``result.json`` (with the experts' per-clip
scores and A-/B-line flags removed: they are the dataset's labels, which are not
redistributed; its summary metrics and confusion counts stay), ``state.json`` and
``oof_probs.npz`` (as float16), no weights.
``restore`` copies them into a run folder and puts the labels back from the data's
``severity.csv``; rerunning the same ``lusviewer crossval`` command there then skips
the finished folds (and repeats) and trains only what is missing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lusviewer.training.data import load_covid_blues  # noqa: E402

LABEL_KEYS = ("score", "findings")


def _finished(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.glob("**/result.json"))


def export(run_dir: Path, dest: Path) -> None:
    n = 0
    for work in _finished(run_dir):
        rel = work.relative_to(run_dir)
        out = dest / rel
        out.mkdir(parents=True, exist_ok=True)
        rec = json.loads((work / "result.json").read_text())
        for c in rec.get("clips", []):
            c["clip"] = Path(c["clip"]).name
            for key in LABEL_KEYS:
                c.pop(key, None)
        (out / "result.json").write_text(json.dumps(rec, indent=1))
        shutil.copyfile(work / "state.json", out / "state.json")
        if (work / "oof_probs.npz").is_file():
            with np.load(work / "oof_probs.npz", allow_pickle=False) as npz:
                arrays = {k: npz[k].astype(np.float16) for k in npz.files}
            np.savez_compressed(out / "oof_probs.npz", **arrays)  # type: ignore[arg-type]
        n += 1
    for report in run_dir.glob("**/report.md"):
        target = dest / report.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report, target)
    print(f"exported {n} finished fold runs of {run_dir} to {dest} (labels removed)")


def restore(src: Path, run_dir: Path, data: Path) -> None:
    clips = {Path(c.path).name: c for c in load_covid_blues(data)}
    n = 0
    for work in _finished(src):
        rel = work.relative_to(src)
        out = run_dir / rel
        out.mkdir(parents=True, exist_ok=True)
        rec = json.loads((work / "result.json").read_text())
        for c in rec.get("clips", []):
            known = clips.get(c["clip"])
            if known is None:
                raise SystemExit(f"{work}: clip {c['clip']} is not in {data}: another dataset?")
            c["clip"] = known.path
            c["score"] = known.score
            if known.findings is not None:
                c["findings"] = list(known.findings)
        (out / "result.json").write_text(json.dumps(rec, indent=2))
        shutil.copyfile(work / "state.json", out / "state.json")
        if (work / "oof_probs.npz").is_file():
            shutil.copyfile(work / "oof_probs.npz", out / "oof_probs.npz")
        n += 1
    print(f"restored {n} fold runs into {run_dir}; rerun the same `lusviewer crossval` command to continue")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("run_dir", type=Path)
    e.add_argument("dest", type=Path)
    r = sub.add_parser("restore")
    r.add_argument("src", type=Path)
    r.add_argument("run_dir", type=Path)
    r.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "covid-blues")
    a = ap.parse_args()
    if a.cmd == "export":
        export(a.run_dir, a.dest)
    else:
        restore(a.src, a.run_dir, a.data)


if __name__ == "__main__":
    main()
