"""Labelled clips, patient-disjoint splits, a decoded-frame cache and augmentation."""

from __future__ import annotations

import csv
import hashlib
import math
import os
import random
import re
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lusviewer.io import DICOM_EXTENSIONS, VIDEO_EXTENSIONS, ClipError, open_clip
from lusviewer.model.preprocess import model_frames
from lusviewer.wording import count

_PATIENT_RE = re.compile(r"patient_(\d+)")


@dataclass(frozen=True)
class LabelledClip:
    path: str
    score: int  # the clip's score (for per-frame labels: the worst frame score)
    group: str  # patient id: splits never put one group on both sides
    frame_scores: tuple[int, ...] | None = None  # per-frame labels where the data has them
    unlabelled_score: int | None = None  # frames without a label, where not the clip's score
    #: The experts' per-clip findings, where the data has them: (A-lines, B-lines), 1 = yes.
    findings: tuple[int, int] | None = None

    def target(self, frame: int) -> int:
        """The training target of one frame: its own label, else the clip's own score."""
        if self.frame_scores is not None and frame < len(self.frame_scores):
            return self.frame_scores[frame]
        return self.score if self.unlabelled_score is None else self.unlabelled_score

    def targets(self, n_frames: int) -> np.ndarray:
        return np.array([self.target(i) for i in range(n_frames)], dtype=np.int64)


def group_of(path: str, group_by: str | None) -> str:
    """The patient (group) of a clip: ``patient_<ID>`` in its name or path by default,
    else the first group of ``group_by``. No rule, no guess: a clip whose patient
    cannot be told would put one patient on both sides of a split."""
    if group_by is None:
        m = _PATIENT_RE.search(Path(path).name) or _PATIENT_RE.search(str(path))
        if not m:
            raise ValueError(
                f"{path}: no patient id in the name (the default rule looks for 'patient_<N>'); give "
                "--group-by REGEX (or --group-column with --labels) so that no patient is on both sides "
                "of a split; --group-by '(.+)' makes every clip its own patient"
            )
        return m.group(1)
    m = re.search(group_by, Path(path).name) or re.search(group_by, str(path))
    if not m:
        raise ValueError(f"--group-by {group_by!r} does not match {path!r}")
    return m.group(1) if m.groups() else m.group(0)


def load_label_csv(
    table: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    clip_column: str = "clip",
    score_column: str = "score",
    group_column: str | None = None,
    group_by: str | None = None,
) -> list[LabelledClip]:
    """Clips and scores from a CSV: a clip path (relative to ``root``, default the CSV's
    folder), a score 0-3, and the group (patient) from a column or a regex on the name."""
    table = Path(table)
    base = Path(root) if root is not None else table.parent
    clips = []
    seen: dict[str, int] = {}
    rows = _read_table(table, required=[clip_column, score_column, *([group_column] if group_column else [])])
    for i, row in rows:
        name = (row[clip_column] or "").strip()
        score = _score_value(row[score_column], f"{table}, line {i}")
        if not name:
            raise ValueError(f"{table}, line {i}: empty {clip_column!r}")
        if name in seen:
            raise ValueError(f"{table}, line {i}: clip {name!r} is listed again (first on line {seen[name]})")
        seen[name] = i
        path = str(base / name)
        group = (row[group_column] or "").strip() if group_column else group_of(path, group_by)
        if not group:
            raise ValueError(f"{table}, line {i}: empty {group_column!r}")
        clips.append(LabelledClip(path, score, group))
    return clips


def _read_table(table: Path, *, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a label CSV with their line numbers. Reads what spreadsheets write: a
    UTF-8 byte-order mark, and comma, semicolon or tab separators."""
    try:
        with open(table, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise ValueError(f"{table}: not UTF-8 text; save it as 'CSV UTF-8'") from None
    try:
        dialect: Any = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(
            f"{table}: needs column(s) {', '.join(map(repr, missing))}; found {', '.join(map(repr, header))}"
        )
    return list(enumerate(reader, start=2))


def _score_value(text: str | None, where: str) -> int:
    """A score 0-3 written as an integer (``2`` or ``2.0``); anything else is an error."""
    try:
        value = float((text or "").strip())
    except ValueError:
        raise ValueError(f"{where}: score {text!r} is not a number") from None
    if not value.is_integer() or not 0 <= value <= 3:
        raise ValueError(f"{where}: score {text!r} is not one of 0, 1, 2, 3")
    return int(value)


_FRAME_SCORE_RE = re.compile(r"score[_-]?(\d)", re.IGNORECASE)


def load_iclus_folders(root: str | os.PathLike[str], *, group_by: str | None = None) -> list[LabelledClip]:
    """ICLUS-DB layout: one folder per clip, frame images whose names carry ``Score<N>``
    (per-frame labels). The clip's score is its worst frame score."""
    from lusviewer.io.clip import image_files

    clips = []
    for folder in sorted({f.parent for f in Path(root).rglob("*") if f.is_file()}):
        files = image_files(folder)
        if not files:
            continue
        scores = []
        for f in files:
            m = _FRAME_SCORE_RE.search(f.name)
            if not m:
                raise ValueError(f"{f}: frame name carries no Score<N> label")
            scores.append(int(m.group(1)))
        clips.append(LabelledClip(str(folder), max(scores), group_of(str(folder), group_by), tuple(scores)))
    if not clips:
        raise FileNotFoundError(f"{root}: no folders of frame images found")
    return clips


def apply_frame_labels(
    clips: Sequence[LabelledClip], table: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> list[LabelledClip]:
    """Per-frame labels from a CSV (``clip,frame,score``; frames numbered from 0).

    ``clip`` names a clip as the label CSV does (a path relative to ``root``, the data
    folder), or by a path relative to this table's folder, an absolute path, or a file
    name or stem that only one clip has. A row that names no clip, or a name that fits
    several, is an error. A frame scored above its clip raises the clip's score to it
    (a clip's score is its worst frame's, as in ICLUS); frames without a label keep the
    clip's own score, and clips not in the table keep it for every frame.
    """
    table = Path(table)
    by_path = {os.path.realpath(c.path): c.path for c in clips}
    names: dict[str, list[str]] = defaultdict(list)
    for c in clips:
        for key in {Path(c.path).name, Path(c.path).stem}:
            names[key].append(c.path)

    def clip_of(name: str, where: str) -> str:
        for base in (Path(root) if root is not None else None, table.parent, None):
            candidate = os.path.realpath(base / name if base is not None else name)
            if candidate in by_path:
                return by_path[candidate]
        found = names.get(Path(name).name) or names.get(name) or []
        if len(found) == 1:
            return found[0]
        if found:
            raise ValueError(f"{where}: clip {name!r} fits {len(found)} clips; give its path as in the labels")
        raise ValueError(f"{where}: clip {name!r} is none of the data's clips")

    per: dict[str, dict[int, int]] = defaultdict(dict)
    for i, row in _read_table(table, required=["clip", "frame", "score"]):
        where = f"{table}, line {i}"
        path = clip_of((row["clip"] or "").strip(), where)
        try:
            frame = int((row["frame"] or "").strip())
        except ValueError:
            raise ValueError(f"{where}: frame {row['frame']!r} is not a whole number") from None
        if frame < 0:
            raise ValueError(f"{where}: frame {frame} (frames are numbered from 0)")
        per[path][frame] = _score_value(row["score"], where)
    out = []
    for c in clips:
        labels = per.get(c.path)
        if labels:
            n = max(labels) + 1
            own = c.frame_scores or ()  # ICLUS folders have their own frame labels: kept where not given
            scores = tuple(labels.get(i, own[i] if i < len(own) else c.score) for i in range(max(n, len(own))))
            # As in ICLUS: a clip's score is its worst frame's (unlabelled frames keep the clip's own).
            worst = max(c.score, *scores)
            out.append(LabelledClip(c.path, worst, c.group, scores, c.score if worst != c.score else None))
        else:
            out.append(c)
    return out


def load_covid_blues(root: str | os.PathLike[str]) -> list[LabelledClip]:
    """Clips and per-clip scores of a COVID-BLUeS folder (``severity.csv`` + ``videos/``)."""
    root = Path(root)
    table = root / "severity.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{table}: label table not found")
    clips: list[LabelledClip] = []
    with open(table, newline="") as fh:
        for row in csv.DictReader(fh):
            name = row["video_file"].strip()
            m = _PATIENT_RE.search(name)
            if not m:
                raise ValueError(f"{table}: cannot read a patient id from {name!r}")
            video = root / "videos" / (name if Path(name).suffix else name + ".mp4")
            found = (_yes_no(row.get("A-lines")), _yes_no(row.get("B-lines")))
            findings = (found[0], found[1]) if found[0] is not None and found[1] is not None else None
            clips.append(LabelledClip(str(video), int(float(row["Severity Score"])), m.group(1), findings=findings))
    return clips


def _yes_no(text: str | None) -> int | None:
    """1 for "yes", 0 for "no" (any case, surrounding spaces), None for anything else."""
    t = (text or "").strip().lower()
    return 1 if t == "yes" else 0 if t == "no" else None


LAYOUTS = ("auto", "covid-blues", "csv", "iclus")


def load_dataset(
    data: str | os.PathLike[str],
    *,
    layout: str = "auto",
    labels: str | os.PathLike[str] | None = None,
    group_by: str | None = None,
    group_column: str | None = None,
    frame_labels: str | os.PathLike[str] | None = None,
) -> list[LabelledClip]:
    """Any supported layout: COVID-BLUeS (``severity.csv`` + ``videos/``), clips + a label
    CSV (``--labels``), or ICLUS-style frame folders; then optional per-frame labels."""
    root = Path(data)
    if not root.is_dir():
        raise ValueError(f"--data {data}: no such folder")
    clip_files = {e.lower() for e in (*VIDEO_EXTENSIONS, *DICOM_EXTENSIONS)}
    if (
        layout == "auto"
        and not labels
        and not (root / "severity.csv").is_file()
        and any(f.suffix.lower() in clip_files or f.suffix.lower() == ".csv" for f in root.iterdir())
    ):
        raise ValueError(
            f"--data {data}: holds clips or CSV files but no severity.csv: name the label table with "
            "--labels CSV (or --layout iclus for frame folders)"
        )
    if layout == "auto":
        layout = "csv" if labels else "covid-blues" if (root / "severity.csv").is_file() else "iclus"
    if layout == "covid-blues":
        clips = load_covid_blues(root)
    elif layout == "csv":
        if labels is None:
            raise ValueError("the csv layout needs --labels CSV")
        clips = load_label_csv(labels, root=root, group_column=group_column, group_by=group_by)
    elif layout == "iclus":
        clips = load_iclus_folders(root, group_by=group_by)
    else:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    if not clips:
        raise ValueError(f"{data}: no labelled clips")
    return apply_frame_labels(clips, frame_labels, root=root) if frame_labels else clips


DATA_OPTIONS = ("data", "layout", "labels", "group_by", "group_column", "frame_labels")


def data_options(options: Any) -> dict[str, Any]:
    """The data options (:data:`DATA_OPTIONS`) of a config or parsed CLI arguments, to build another config from."""
    return {name: getattr(options, name) for name in DATA_OPTIONS}


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """``k`` evenly spaced frame indices of a clip of ``n`` frames (fewer if it is shorter)."""
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def load_dataset_with(options: Any) -> list[LabelledClip]:
    """:func:`load_dataset` with the data options of a ``TrainConfig`` or parsed CLI arguments."""
    return load_dataset(
        options.data,
        layout=options.layout,
        labels=options.labels,
        group_by=options.group_by,
        group_column=options.group_column,
        frame_labels=options.frame_labels,
    )


def dataset_fingerprint(clips: Sequence[LabelledClip], root: str | os.PathLike[str]) -> str:
    """A hash of what a run learns from: each clip (its path relative to the data folder
    ``root``, so the same data elsewhere, e.g. on a GPU machine, has the same hash), its
    score, patient and frame labels. A work dir holding another fingerprint holds another run."""
    base = os.path.realpath(root)

    def rel(c: LabelledClip) -> str:
        return os.path.relpath(os.path.realpath(c.path), base)

    h = hashlib.sha256()
    for c in sorted(clips, key=rel):
        h.update(repr((rel(c), c.score, c.group, c.frame_scores, c.unlabelled_score)).encode())
    return h.hexdigest()[:16]


def split_warnings(train: Sequence[LabelledClip], val: Sequence[LabelledClip]) -> list[str]:
    """What a researcher should know about a split before training on it."""
    have = sorted({c.score for c in (*train, *val)})
    learnt = {c.score for c in train}
    notes = []
    if len(have) == 1:
        notes.append(f"every clip has score {have[0]}: there is nothing to tell apart")
    missing = [s for s in have if s not in learnt]
    if missing and len(have) > 1:
        notes.append(
            f"no training patient has score {', '.join(map(str, missing))} (all such patients are in validation): "
            "the model cannot learn it; with few patients per score, try another --seed or more data"
        )
    return notes


def split_by_group(
    clips: Sequence[LabelledClip], *, val_fraction: float, seed: int
) -> tuple[list[LabelledClip], list[LabelledClip]]:
    """Patient-disjoint split, stratified by each patient's worst clip score. With
    ``val_fraction`` 0, every clip trains (no validation).

    Each score's patients are shuffled (``seed``) and that score gives its share of the
    fraction, rounded, at least one patient, so that every score is validated. That needs
    a validation place per score: where the fraction of all patients, rounded, gives fewer
    places than there are scores (small data: 4 patients of 3 scores at 0.2 gave 3 of the
    4 patients to validation), or where it would leave fewer training than validation
    patients, validation takes instead that many patients (at least 1, at most half), one
    at a time from the score with the most patients still training. Data of normal size
    (COVID-BLUeS' 50 patients and every cross-validation fold's training side, at the
    default fraction) is split as it always was. Fewer than 2 patients cannot be split:
    :class:`ValueError`, one line."""
    if val_fraction <= 0:
        return list(clips), []
    by_group: dict[str, list[LabelledClip]] = defaultdict(list)
    for c in clips:
        by_group[c.group].append(c)
    n = len(by_group)
    if n < 2:
        raise ValueError(
            f"--val-fraction {val_fraction:g}: {count(n, 'patient')} cannot be split into training and "
            "validation patients; use --val-fraction 0 (every patient trains, for the fixed --cnn-epochs) "
            "or more patients"
        )
    strata: dict[int, list[str]] = defaultdict(list)
    for g, cs in sorted(by_group.items()):
        strata[max(c.score for c in cs)].append(g)
    rng = random.Random(seed)
    for _, groups in sorted(strata.items()):
        rng.shuffle(groups)
    take = {s: max(1, round(len(groups) * val_fraction)) for s, groups in strata.items()}
    places = max(1, round(n * val_fraction))
    if places < len(strata) or 2 * sum(take.values()) > n:
        take = _val_places(strata, min(places, n // 2))
    val_groups = {g for s, groups in strata.items() for g in groups[: take[s]]}
    train = [c for c in clips if c.group not in val_groups]
    val = [c for c in clips if c.group in val_groups]
    assert not {c.group for c in train} & {c.group for c in val}
    assert 0 < len({c.group for c in val}) <= len({c.group for c in train})
    return train, val


def _val_places(strata: dict[int, list[str]], places: int) -> dict[int, int]:
    """How many validation patients each score gives when there are only ``places``: one
    at a time from the score with the most patients still training (the lower score on a
    tie), so that a score held by one patient stays in training while another has more."""
    take = dict.fromkeys(strata, 0)
    for _ in range(places):
        s = max(sorted(strata), key=lambda k: len(strata[k]) - take[k])
        take[s] += 1
    return take


def group_kfold(
    clips: Sequence[LabelledClip], *, k: int, seed: int
) -> list[tuple[list[LabelledClip], list[LabelledClip]]]:
    """k patient-disjoint (train, test) folds, stratified by each patient's worst score:
    within each stratum, shuffled patients are dealt to the folds in turn (the fold that
    has the fewest clips so far first), so every fold sees every severity where possible."""
    by_group: dict[str, list[LabelledClip]] = defaultdict(list)
    for c in clips:
        by_group[c.group].append(c)
    if k < 2 or k > len(by_group):
        n = len(by_group)
        raise ValueError(f"-k {k}: needs 2 <= k <= the number of patients; the data has {count(n, 'patient')}")
    strata: dict[int, list[str]] = defaultdict(list)
    for g, cs in sorted(by_group.items()):
        strata[max(c.score for c in cs)].append(g)
    rng = random.Random(seed)
    fold_groups: list[list[str]] = [[] for _ in range(k)]
    fold_size = [0] * k
    for level in sorted(strata, reverse=True):  # rarest (worst) first
        groups = strata[level]
        rng.shuffle(groups)
        for g in groups:
            f = min(range(k), key=lambda i: (fold_size[i], len(fold_groups[i])))
            fold_groups[f].append(g)
            fold_size[f] += len(by_group[g])
    folds = []
    for test_groups in fold_groups:
        test_set = set(test_groups)
        train = [c for c in clips if c.group not in test_set]
        test = [c for c in clips if c.group in test_set]
        assert not {c.group for c in train} & {c.group for c in test}, "patient on both sides"
        folds.append((train, test))
    return folds


def decode_clip(path: str, size: int, crop: str = "none") -> np.ndarray:
    """All frames of a clip, as the model sees them: uint8 (T, size, size, 3). With
    ``crop="sector"``, the sector found on the first frames (as the scoring engine finds
    it: :func:`~lusviewer.model.preprocess.model_frames`) is cut out of each."""
    with open_clip(path) as reader:
        label = reader.info.path
        _, frames = model_frames(reader.iter_frames(), size, crop, error=lambda reason: ClipError(label, reason))
        return np.stack([small for _, small in frames])


def clip_fps(path: str) -> float:
    """A clip's frame rate as its reader gives it (the rate the scoring engine's
    persistent rule and risk use), 25 where the header gives none. Read once per
    version of the file (validation asks every epoch)."""
    st = os.stat(path)
    return _clip_fps(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4096)
def _clip_fps(path: str, mtime_ns: int, size: int) -> float:
    with open_clip(path) as reader:
        return float(reader.info.fps or 25.0)


def cached_frames(path: str, size: int, cache_dir: str | os.PathLike[str] | None, crop: str = "none") -> np.ndarray:
    """:func:`decode_clip`, kept as ``.npy`` in ``cache_dir`` (keyed by path, size, crop, mtime)."""
    if cache_dir is None:
        return decode_clip(path, size, crop)
    st = os.stat(path)
    what = f"{os.path.abspath(path)}|{size}|{st.st_mtime_ns}|{st.st_size}" + ("" if crop == "none" else f"|{crop}")
    key = hashlib.sha1(what.encode()).hexdigest()
    f = Path(cache_dir) / f"{Path(path).stem}-{key[:12]}.npy"
    if f.is_file():
        return np.asarray(np.load(f, allow_pickle=False))
    arr = decode_clip(path, size, crop)
    f.parent.mkdir(parents=True, exist_ok=True)
    # A temporary name of this process and thread: folds run side by side decode the same
    # clips at once (a shared name made one process's replace find the file gone).
    tmp = f.with_name(f".{f.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npy")
    try:
        np.save(tmp, arr, allow_pickle=False)
        os.replace(tmp, f)
    finally:
        tmp.unlink(missing_ok=True)
    return arr


def augment(
    batch: Tensor,
    gen: torch.Generator,
    *,
    group: int = 1,
    zoom: tuple[float, float] = (0.9, 1.1),
    shift: float = 0.16,
    gain: tuple[float, float] = (0.8, 1.2),
    gamma: float = 0.25,
    padding: str = "zeros",
) -> Tensor:
    """Ultrasound-safe augmentation of (N, 3, S, S) in [0, 1].

    ``group`` consecutive frames share one draw of the parameters (a window of a clip
    moves as one, as a probe would), so ``N`` must be a multiple of ``group``.

    Small rotation (+-10 deg), zoom (0.9-1.1), shift (+-8 %), horizontal flip, gain
    and gamma (the ranges are parameters; self-supervised pretraining widens zoom,
    shift, gain and gamma). No vertical flip and no large rotation: the pleural line sits near
    the top of every LUS frame and A-lines lie horizontal below it; the paper's
    360-degree rotation and vertical flip make frames no probe produces.

    ``padding``: what fills the margins a shift, zoom-out or rotation uncovers
    (``grid_sample``'s ``zeros``, ``reflection`` or ``border``). Zeros add black
    margins that move with the draw; a network can learn cues from them.
    """
    if batch.shape[0] % group:
        raise ValueError(f"batch of {batch.shape[0]} frames is not a multiple of group {group}")
    n, draws = batch.shape[0], batch.shape[0] // group

    def u(lo: float, hi: float) -> Tensor:
        return (torch.rand(draws, generator=gen) * (hi - lo) + lo).repeat_interleave(group)

    ang = u(-10, 10) * math.pi / 180
    scale = u(*zoom)
    flip = torch.where(torch.rand(draws, generator=gen) < 0.5, -1.0, 1.0).repeat_interleave(group)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * flip
    theta[:, 1, 1] = cos
    theta[:, 0, 2] = u(-shift, shift)
    theta[:, 1, 2] = u(-shift, shift)
    theta = theta.to(batch.device)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    out = F.grid_sample(batch.contiguous(), grid, mode="bilinear", padding_mode=padding, align_corners=False)
    g = u(*gain).view(n, 1, 1, 1).to(batch.device)
    power = torch.exp(u(-gamma, gamma)).view(n, 1, 1, 1).to(batch.device)
    return (out.clamp(0, 1) ** power * g).clamp(0, 1)
