"""The patient-level validation split (``training.data.split_by_group``): sensible on very
small data, and exactly the old split on data of normal size, so that earlier runs (the
shipped model's, every cross-validation fold's) stay reproducible."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import shared_data

from lusviewer.training.config import TrainConfig
from lusviewer.training.data import LabelledClip, group_kfold, load_covid_blues, split_by_group


def _old_split(
    clips: Sequence[LabelledClip], *, val_fraction: float, seed: int
) -> tuple[list[LabelledClip], list[LabelledClip]]:
    """The split as it was before small data were handled (commit 80b5772), kept verbatim."""
    if val_fraction <= 0:
        return list(clips), []
    by_group: dict[str, list[LabelledClip]] = defaultdict(list)
    for c in clips:
        by_group[c.group].append(c)
    strata: dict[int, list[str]] = defaultdict(list)
    for g, cs in sorted(by_group.items()):
        strata[max(c.score for c in cs)].append(g)
    rng = random.Random(seed)
    val_groups: set[str] = set()
    for _, groups in sorted(strata.items()):
        rng.shuffle(groups)
        val_groups.update(groups[: max(1, round(len(groups) * val_fraction))])
    train = [c for c in clips if c.group not in val_groups]
    val = [c for c in clips if c.group in val_groups]
    return train, val


def _patients(worst: dict[str, int], clips_each: int = 6) -> list[LabelledClip]:
    """Clips of patients whose worst clip has the given score (their other clips score lower)."""
    return [
        LabelledClip(f"videos/patient_{p}_{i}.mp4", max(0, s - i % 2), p)
        for p, s in worst.items()
        for i in range(clips_each)
    ]


def _groups(clips: Sequence[LabelledClip]) -> set[str]:
    return {c.group for c in clips}


#: 50 patients with COVID-BLUeS' worst-score counts (2 of score 0, 11 of 1, 18 of 2, 19 of 3),
#: its patient ids' gaps included.
_FIFTY = dict(
    zip([str(p) for p in range(1, 80) if p % 3 != 0][:50], [0] * 2 + [1] * 11 + [2] * 18 + [3] * 19, strict=True)
)


def test_normal_size_split_is_the_old_one() -> None:
    clips = _patients(_FIFTY)
    default = TrainConfig(data="d", out="o")
    train, val = split_by_group(clips, val_fraction=default.val_fraction, seed=default.seed)
    old_train, old_val = _old_split(clips, val_fraction=default.val_fraction, seed=default.seed)
    assert val == old_val and train == old_train
    assert len(_groups(val)) == 11  # the old rule's, one score-0 patient included: kept as it was
    for seed in range(30):  # other seeds, and every fold's training side (crossval, two repeats)
        assert split_by_group(clips, val_fraction=0.2, seed=seed) == _old_split(clips, val_fraction=0.2, seed=seed)
    for repeat_seed in (0, 1000):
        for fi, (side, _) in enumerate(group_kfold(clips, k=5, seed=repeat_seed)):
            new = split_by_group(side, val_fraction=0.2, seed=repeat_seed + fi)
            assert new == _old_split(side, val_fraction=0.2, seed=repeat_seed + fi)


def test_covid_blues_splits_are_the_old_ones() -> None:
    """On the real data: the full split and every fold's, at the fractions the committed runs used."""
    clips = load_covid_blues(shared_data("covid-blues"))
    for fraction in (0.2, 0.25):
        assert split_by_group(clips, val_fraction=fraction, seed=0) == _old_split(clips, val_fraction=fraction, seed=0)
        for repeat_seed in (0, 1000):
            for fi, (side, _) in enumerate(group_kfold(clips, k=5, seed=repeat_seed)):
                seed = repeat_seed + fi
                assert split_by_group(side, val_fraction=fraction, seed=seed) == _old_split(
                    side, val_fraction=fraction, seed=seed
                )


def test_four_patients_give_one_to_validation() -> None:
    """4 patients of three worst scores at the default 0.2: the old split gave 3 of them to
    validation (one per score), training on one; now 1 (0.8 rounded), from the score with
    most patients, so that every score stays in training."""
    clips = _patients({"2": 1, "3": 2, "4": 3, "11": 3})
    for seed in range(10):
        assert len(_groups(_old_split(clips, val_fraction=0.2, seed=seed)[1])) == 3
        train, val = split_by_group(clips, val_fraction=0.2, seed=seed)
        assert _groups(val) in ({"4"}, {"11"})
        assert {c.score for c in clips if c.group in _groups(train)} == {0, 1, 2, 3}


@pytest.mark.parametrize("n", range(2, 13))
def test_small_data_never_trains_on_fewer_patients_than_it_validates(n: int) -> None:
    rng = random.Random(n)
    for trial in range(20):
        clips = _patients({str(p): rng.randrange(4) for p in range(n)}, clips_each=2)
        for fraction in (0.1, 0.2, 0.3, 0.5, 0.9):
            train, val = split_by_group(clips, val_fraction=fraction, seed=trial)
            n_val, n_train = len(_groups(val)), len(_groups(train))
            assert n_val + n_train == n and not _groups(val) & _groups(train)
            assert 1 <= n_val <= n_train
            # beyond the fraction rounded only as the old split, one patient per score, went
            assert n_val <= max(1, round(n * fraction)) or (train, val) == _old_split(
                clips, val_fraction=fraction, seed=trial
            )


def test_one_patient_cannot_be_split() -> None:
    clips = _patients({"7": 2})
    with pytest.raises(ValueError) as info:
        split_by_group(clips, val_fraction=0.2, seed=0)
    text = str(info.value)
    assert "\n" not in text and text.startswith("--val-fraction 0.2: 1 patient cannot be split")
    assert "--val-fraction 0" in text
    assert split_by_group(clips, val_fraction=0, seed=0) == (clips, [])  # no validation: fine


def test_folds_that_leave_too_few_patients_are_refused_before_decoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """crossval -k 2 on 3 patients: one fold trains on 1 patient, which the validation split
    cannot split. It said '1 patient cannot be split' after decoding every clip, where the
    data has 3; now one line before any decoding names the fold and the ways out. -k above
    the number of patients names -k."""
    from lusviewer.cli import run

    root = tmp_path / "blues"
    (root / "videos").mkdir(parents=True)
    rows = ["video_file,Severity Score,A-lines,B-lines,comments"]
    for p, score in ((2, 1), (3, 2), (4, 3)):
        (root / "videos" / f"patient_{p}_L1.mp4").write_bytes(b"never decoded")
        rows.append(f"patient_{p}_L1,{score}.0,yes,no,")
    (root / "severity.csv").write_text("\n".join(rows) + "\n")
    common = ["crossval", "--data", str(root), "--variants", "compact", "--cache-dir", str(tmp_path / "cache")]
    capsys.readouterr()
    assert run([*common, "--out", str(tmp_path / "cv"), "-k", "2"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "lusviewer: error: fold 0 of 2: its training side has 1 patient (of 3), which --val-fraction 0.2 cannot "
        "split into training and validation patients; use more patients, or --val-fraction 0 (fixed epochs, no "
        "validation)"
    ]
    assert not (tmp_path / "cache").exists()  # nothing decoded
    assert run([*common, "--out", str(tmp_path / "cv5"), "-k", "5"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "lusviewer: error: -k 5: needs 2 <= k <= the number of patients; the data has 3 patients"
    ]
