"""``lusviewer score`` under torchrun, 2 gloo ranks on the CPU: the same report as one
process; a failed clip or a failed rank is named, the others' work kept."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from lusviewer.cli.distributed import missing_path_for, part_path, share_of
from lusviewer.io.synthetic import synthetic_frames, write_video
from lusviewer.report import clips_path_for

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()),
        reason="torch.distributed with the gloo backend is not available in this torch build",
    ),
]

#: One thread a process, as torchrun sets it: the single process computes alike.
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def score(*args: str, ranks: int = 1) -> subprocess.CompletedProcess[str]:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks > 1 else []
    return subprocess.run(
        [sys.executable, *launcher, "-m", "lusviewer", "score", *args, "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=600,
    )


def rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def folder(root: Path, names: list[str]) -> Path:
    """Clips of 8 frames, 64 px; a name with "bad" is not a video."""
    root.mkdir()
    for i, name in enumerate(names):
        if "bad" in name:
            (root / name).write_bytes(b"not a video")
        else:
            write_video(root / name, synthetic_frames(8 + i, size=64, seed=i), fps=10.0)
    return root


def test_share_is_disjoint_and_covers_every_clip() -> None:
    clips = [f"c{i}" for i in range(7)]
    shares = [share_of(clips, r, 3) for r in range(3)]
    assert shares == [["c0", "c3", "c6"], ["c1", "c4"], ["c2", "c5"]]
    assert part_path("out/report.csv", 1, 3) == Path("out/report.rank1of3.csv")
    assert missing_path_for("out/report.csv") == Path("out/report_missing.csv")


def test_two_ranks_write_the_report_one_process_writes(tmp_path: Path, tiny_model: Path) -> None:
    clips = folder(tmp_path / "clips", [f"c{i}.mp4" for i in range(5)])
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    single = score(str(clips), "-o", str(one), "--model", str(tiny_model))
    assert single.returncode == 0, single.stderr
    ranked = score(str(clips), "-o", str(two), "--model", str(tiny_model), ranks=2)
    assert ranked.returncode == 0, ranked.stderr[-3000:]
    # No timing columns in the report: byte for byte, both files.
    assert two.read_bytes() == one.read_bytes()
    assert clips_path_for(two).read_bytes() == clips_path_for(one).read_bytes()
    assert len(rows(clips_path_for(two))) == 1 + 5
    # The parts have served; nothing is missing.
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["clips", "one.csv", "one_clips.csv", "two.csv", "two_clips.csv"]


def test_a_failed_clip_and_a_failed_rank_are_named_and_the_others_kept(tmp_path: Path, tiny_model: Path) -> None:
    # sorted: c0 c1 c1_bad c2 c3 c4 -> rank 0 scores c0, c1_bad, c3; rank 1 c1, c2, c4
    clips = folder(tmp_path / "clips", ["c0.mp4", "c1.mp4", "c1_bad.mp4", "c2.mp4", "c3.mp4", "c4.mp4"])
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    part1 = part_path(two, 1, 2)
    part1.mkdir()  # rank 1 cannot put its part in place: the whole rank fails
    single = score(str(clips), "-o", str(one), "--model", str(tiny_model))
    assert single.returncode == 1, single.stderr
    ranked = score(str(clips), "-o", str(two), "--model", str(tiny_model), ranks=2)
    assert ranked.returncode != 0
    assert "lusviewer: error: rank 1 of 2 failed: " in ranked.stderr and str(part1) in ranked.stderr
    assert "c1_bad.mp4: not a readable video" in ranked.stderr

    # The report holds rank 0's clips, rows as one process writes them, in its order.
    kept = {str(clips / "c0.mp4"), str(clips / "c3.mp4")}
    for merged, ref in ((two, one), (clips_path_for(two), clips_path_for(one))):
        expected = [r for r in rows(ref) if r[0] == "clip" or r[0] in kept]
        assert rows(merged) == expected
    missing = rows(missing_path_for(two))
    assert missing[0] == ["clip", "rank", "reason"]
    assert [(Path(c).name, r) for c, r, _ in missing[1:]] == [
        ("c1.mp4", "1"),
        ("c1_bad.mp4", "0"),
        ("c2.mp4", "1"),
        ("c4.mp4", "1"),
    ]
    reasons = {Path(c).name: why for c, _, why in missing[1:]}
    assert reasons["c1_bad.mp4"].endswith("c1_bad.mp4: not a readable video (the decoder could not open it)")
    assert reasons["c2.mp4"].startswith("rank 1 of 2 failed: ") and str(part1) in reasons["c2.mp4"]
    # Rank 0's part stays beside the report.
    part0 = part_path(two, 0, 2)
    assert [r[0] for r in rows(clips_path_for(part0))[1:]] == [str(clips / "c0.mp4"), str(clips / "c3.mp4")]
    assert rows(part0)[1:] == rows(two)[1:]


def test_two_ranks_write_the_json_report_one_process_writes(tmp_path: Path, tiny_model: Path) -> None:
    """-o report.json: the ranks' parts are CSVs, rank 0 writes the same JSON as one process,
    the clip that failed listed under not_scored with its reason in both."""
    import json

    clips = folder(tmp_path / "clips", ["c0.mp4", "c1_bad.mp4", "c2.mp4"])
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert part_path(two, 1, 2) == tmp_path / "two.rank1of2.csv"
    assert missing_path_for(two) == tmp_path / "two_missing.csv"
    single = score(str(clips), "-o", str(one), "--model", str(tiny_model))
    assert single.returncode == 1, single.stderr
    ranked = score(str(clips), "-o", str(two), "--model", str(tiny_model), ranks=2)
    assert ranked.returncode == 1, ranked.stderr[-3000:]
    doc_one, doc_two = (json.loads(p.read_text(encoding="utf-8")) for p in (one, two))
    assert doc_two == doc_one
    assert [Path(c["clip"]).name for c in doc_two["clips"]] == ["c0.mp4", "c2.mp4"]
    assert [Path(c["clip"]).name for c in doc_two["not_scored"]] == ["c1_bad.mp4"]
    assert doc_two["all_scored"] is False and "not a readable video" in doc_two["not_scored"][0]["reason"]
