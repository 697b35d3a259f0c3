"""Compare recipes from their saved out-of-fold predictions: repeated, patient-grouped,
paired, with patient-bootstrap intervals; no retraining.

A cross-validation (``lusviewer crossval``) keeps every test clip's prediction in
``[rep<r>/]fold<i>/<variant>/result.json``. Here each (folder, variant) is a *recipe*;
all recipes compared must have tested the same clips in the same repeats (the same
data, ``-k``, ``--seed`` and ``--repeats``: the same folds), so every difference is
paired clip by clip. Per recipe and repeat the clip metrics are computed over all
out-of-fold clips, then averaged over the repeats; intervals resample *patients* (all
their clips together) 1,000 times, the same draws for every recipe, so the interval of
a difference is that of the paired difference.

Reference rows on the same clips: always 0, always 1, and (not a model: it knows the
answers) each clip given its patient's most common expert score.

A folder given as ``DIR@expected`` (or ``DIR@expected:T``) is the same recipe scored by
the ``expected`` clip rule instead of the rule its clips were scored by, with thresholds
fitted by prevalence on the other folds (nested; frame probabilities at temperature
``T``, default 1): :mod:`lusviewer.training.cliprule`. ``DIR@expected:nested`` nests the
temperature as well: each fold's at the one fitted on the other folds' frames. Its AUCs are the recipe's (the
rule changes the clip score, not the clip's risk).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lusviewer.training.cliprule import nested_predictions
from lusviewer.training.metrics import classification_metrics, ordinal_aucs, roc_auc, spearman
from lusviewer.training.stopping import BUDGET, STAGE_WORDS
from lusviewer.wording import count

#: The clip metrics of the report, in its column order, and how they read.
KEYS = ("qwk", "mae", "accuracy", "within_one", "balanced_accuracy", "macro_f1", "auc_ge1", "auc_ge2", "auc_ge3")
PATIENT_KEY = "lus_spearman"
ALL_KEYS = (*KEYS, PATIENT_KEY)
LABELS = {
    "qwk": "QWK",
    "mae": "MAE",
    "accuracy": "exact",
    "within_one": "within-one",
    "balanced_accuracy": "balanced acc.",
    "macro_f1": "macro-F1",
    "auc_ge1": "AUC >=1",
    "auc_ge2": "AUC >=2",
    "auc_ge3": "AUC >=3",
    PATIENT_KEY: "LUS-total Spearman",
    "aux_auc_a_lines": "AUC A-lines",
    "aux_auc_b_lines": "AUC B-lines",
}
LOWER_IS_BETTER = {"mae"}
ALWAYS = ("always 0", "always 1")
ORACLE = "patient-majority oracle"


@dataclass
class Recipe:
    """One recipe's out-of-fold clip predictions: per repeat, clip name -> row."""

    name: str
    source: str
    repeats: dict[int, dict[str, dict[str, object]]] = field(default_factory=dict)
    elapsed_s: float = 0.0
    folds: int = 0
    #: fold runs whose training the wall-clock budget stopped before their epochs
    cut_short: list[str] = field(default_factory=list)


def clock_stops(result: Path) -> list[str]:
    """The stages of one fold run (its ``state.json`` beside ``result``) that their
    wall-clock budget stopped before their epoch cap, as "stage 1 (CNN): 2 of 12
    epochs". Runs from before the stop was recorded are judged from their elapsed time
    (stage 1, stage 3) or, for stage 2, by having had no validation to stop early on."""
    path = result.with_name("state.json")
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    cfg = state.get("config", {})
    out = []
    for stage in ("cnn", "lstm", "e2e"):
        st, cap, minutes = state.get(stage), cfg.get(f"{stage}_epochs"), cfg.get(f"{stage}_minutes")
        if not isinstance(st, dict) or not st.get("done") or cap is None:
            continue
        epoch = int(st.get("epoch", 0))
        why = st.get("stopped_by")
        if why is None and epoch < int(cap):
            elapsed = st.get("elapsed_s")
            if elapsed is not None and minutes is not None and float(elapsed) >= float(minutes) * 60:
                why = BUDGET
            elif stage != "cnn" and elapsed is None and not cfg.get("val_fraction"):
                why = BUDGET  # stage 2 without validation ends by its epochs or its clock only
        if why == BUDGET:
            out.append(f"{STAGE_WORDS.get(stage, stage)}: {epoch} of {cap} epochs")
    return out


def load_recipes(
    dirs: Sequence[str | os.PathLike[str]],
    *,
    repeats: Sequence[int] | None = None,
    patients: Sequence[str] | None = None,
) -> list[Recipe]:
    """Every (folder, variant) of the cross-validation folders ``dirs``; with ``repeats``,
    only those repeats of each (a run that has finished some repeats compared with runs
    that have finished all, on the repeats they share). Raises ValueError naming the
    folder where one holds no result, results without per-clip rows, or not a repeat asked for.
    With ``patients``, only those patients' clips are kept, *after* any nested clip rule
    was fitted on every fold (a subset such as another model's validation patients,
    scored exactly as in the whole cross-validation)."""
    recipes: list[Recipe] = []
    for d in dirs:
        root, rule, temperature = parse_spec(d)
        files = sorted(root.glob("fold*/*/result.json")) + sorted(root.glob("rep*/fold*/*/result.json"))
        if not files:
            raise ValueError(f"{root}: no fold results (fold*/<variant>/result.json) here")
        by_variant: dict[str, Recipe] = {}
        for f in files:
            rec = json.loads(f.read_text())
            if "clips" not in rec:
                raise ValueError(f"{f}: a result without per-clip predictions (older lusviewer); rerun that fold")
            variant = str(rec["variant"])
            r = int(rec.get("repeat", int(f.parts[-4][3:]) if f.parts[-4].startswith("rep") else 0))
            suffix = "" if rule is None else f"@{rule}" + _temperature_suffix(temperature)
            recipe = by_variant.setdefault(variant, Recipe(f"{root.name}:{variant}{suffix}", str(root)))
            rows = recipe.repeats.setdefault(r, {})
            for c in rec["clips"]:
                name = Path(str(c["clip"])).name
                if name in rows:
                    raise ValueError(f"{f}: clip {name} tested twice in repeat {r} (folds overlap?)")
                rows[name] = {**c, "fold": rec["fold"]}
            recipe.elapsed_s += float(rec.get("elapsed_s", 0.0))
            recipe.folds += 1
            recipe.cut_short += [f"repeat {r} fold {rec['fold']}, {stop}" for stop in clock_stops(f)]
        if repeats is not None:
            for recipe in by_variant.values():
                missing = sorted(set(repeats) - set(recipe.repeats))
                if missing:
                    raise ValueError(f"{root}: {recipe.name} has no results of repeat(s) {missing}")
                recipe.repeats = {r: recipe.repeats[r] for r in sorted(set(repeats))}
                recipe.cut_short = [c for c in recipe.cut_short if int(c.split()[1]) in recipe.repeats]
                recipe.folds = len({(r, row["fold"]) for r, rows in recipe.repeats.items() for row in rows.values()})
        if rule is not None:
            for variant, recipe in by_variant.items():
                nested = nested_predictions(root, variant, temperature, repeats)
                for rep, rows in recipe.repeats.items():
                    for name, row in rows.items():
                        row["pred"] = nested[rep][name]
        if patients is not None:
            keep = {str(p) for p in patients}
            for recipe in by_variant.values():
                for rep, rows in recipe.repeats.items():
                    recipe.repeats[rep] = {c: row for c, row in rows.items() if str(row["group"]) in keep}
                    if not recipe.repeats[rep]:
                        raise ValueError(f"{root}: none of the patients asked for in repeat {rep} of {recipe.name}")
        recipes += list(by_variant.values())
    if len({r.name for r in recipes}) < len(recipes):
        raise ValueError("two folders of the same name: give each recipe's folder its own name")
    return recipes


def _temperature_suffix(temperature: float | None) -> str:
    if temperature is None:
        return f":{NESTED}"
    return f":{temperature:g}" if temperature != 1 else ""


#: ``DIR@expected:nested``: the temperature fitted per fold on the other folds' frames.
NESTED = "nested"


def parse_spec(spec: str | os.PathLike[str]) -> tuple[Path, str | None, float | None]:
    """``DIR``, ``DIR@expected``, ``DIR@expected:T`` or ``DIR@expected:nested`` ->
    (folder, rule or None, temperature; None: nested). ValueError naming the spec where
    the rule or the temperature is not one."""
    text = os.fspath(spec)
    if "@" not in text:
        return Path(text), None, 1.0
    folder, _, rule = text.rpartition("@")
    rule, _, t = rule.partition(":")
    if rule != "expected":
        raise ValueError(f"{text}: unknown clip rule {rule!r} after '@' (only 'expected' is refitted)")
    if t == NESTED:
        return Path(folder), rule, None
    try:
        temperature = float(t) if t else 1.0
    except ValueError:
        raise ValueError(f"{text}: temperature {t!r} is neither a number nor '{NESTED}'") from None
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{text}: a temperature is a number above 0")
    return Path(folder), rule, temperature


def check_paired(recipes: Sequence[Recipe]) -> list[str]:
    """Problems that would make the comparison unpaired (empty: all recipes tested the
    same clips, in the same folds, in every repeat)."""
    first = recipes[0]
    problems = []
    for r in recipes[1:]:
        if sorted(r.repeats) != sorted(first.repeats):
            problems.append(f"{r.name}: repeats {sorted(r.repeats)}, {first.name}: {sorted(first.repeats)}")
            continue
        for rep, rows in r.repeats.items():
            ref = first.repeats[rep]
            if set(rows) != set(ref):
                problems.append(f"{r.name}, repeat {rep}: {len(set(rows) ^ set(ref))} clips differ from {first.name}'s")
            elif any(rows[c]["fold"] != ref[c]["fold"] for c in rows):
                problems.append(f"{r.name}, repeat {rep}: other folds than {first.name}'s (another -k or --seed?)")
    return problems


@dataclass
class Table:
    """Arrays of one repeat's clips in a fixed clip order, for fast resampling."""

    clips: list[str]
    patient: np.ndarray  # (n,) patient index
    score: np.ndarray  # (n,) expert score
    pred: np.ndarray  # (n,) clip score
    risk: np.ndarray  # (n, 3) risk of >= 1, 2, 3
    aux: np.ndarray | None = None  # (n, 2) mean p(A-lines), p(B-lines)
    findings: np.ndarray | None = None  # (n, 2) expert flags, -1 unknown


def _tables(recipe: Recipe, patients: list[str]) -> dict[int, Table]:
    index = {p: i for i, p in enumerate(patients)}
    out = {}
    for rep, rows in sorted(recipe.repeats.items()):
        clips = sorted(rows)
        aux = [rows[c].get("aux") for c in clips]
        fnd = [rows[c].get("findings") for c in clips]
        out[rep] = Table(
            clips,
            np.array([index[str(rows[c]["group"])] for c in clips]),
            np.array([int(rows[c]["score"]) for c in clips]),  # type: ignore[call-overload]
            np.array([int(rows[c]["pred"]) for c in clips]),  # type: ignore[call-overload]
            np.array([rows[c]["risk"] for c in clips], dtype=np.float64),
            np.array(aux, dtype=np.float64) if all(a is not None for a in aux) else None,
            np.array([f if f is not None else (-1, -1) for f in fnd], dtype=np.int64),
        )
    return out


def _constant(t: Table, value: int) -> Table:
    return Table(t.clips, t.patient, t.score, np.full_like(t.score, value), np.zeros_like(t.risk))


def _oracle(t: Table) -> Table:
    """Each clip given its patient's most common expert score (ties: the lower)."""
    pred = np.empty_like(t.score)
    for p in np.unique(t.patient):
        sel = t.patient == p
        pred[sel] = int(np.bincount(t.score[sel], minlength=4).argmax())
    risk = np.stack([(pred >= k).astype(np.float64) for k in (1, 2, 3)], 1)
    return Table(t.clips, t.patient, t.score, pred, risk)


def metrics(t: Table, weights: np.ndarray | None = None) -> dict[str, float]:
    """The report's metrics of one repeat's clips; ``weights`` (n,) repeat clips (a
    bootstrap draw: each clip as often as its patient was drawn)."""
    if weights is None:
        score, pred, risk, patient = t.score, t.pred, t.risk, t.patient
    else:
        idx = np.repeat(np.arange(len(t.score)), weights)
        score, pred, risk = t.score[idx], t.pred[idx], t.risk[idx]
        # a patient drawn twice counts as two patients in the patient-level rank correlation
        copy = np.concatenate([np.arange(w) for w in weights]) if len(idx) else np.zeros(0, int)
        patient = t.patient[idx] * 1000 + copy
    m = classification_metrics(score, pred)
    out = {
        "qwk": m["qwk"],
        "mae": float(np.abs(score - pred).mean()),
        "accuracy": m["accuracy"],
        "within_one": m["within_one"],
        "balanced_accuracy": m["sensitivity"],
        "macro_f1": m["macro_f1"],
    }
    if risk.any():
        out.update(ordinal_aucs(score, risk))
    else:  # a constant answer ranks nothing
        out.update({k: 0.5 for k in ("auc_ge1", "auc_ge2", "auc_ge3")})
    names, inv = np.unique(patient, return_inverse=True)
    expert_total = np.bincount(inv, weights=score, minlength=len(names))
    model_total = np.bincount(inv, weights=pred, minlength=len(names))
    out[PATIENT_KEY] = spearman(expert_total, model_total) if np.ptp(model_total) > 0 else float("nan")
    if t.aux is not None and t.findings is not None:
        for j, name in enumerate(("a_lines", "b_lines")):
            fnd = t.findings[:, j] if weights is None else t.findings[idx, j]
            a = t.aux[:, j] if weights is None else t.aux[idx, j]
            known = fnd >= 0
            out[f"aux_auc_{name}"] = roc_auc(fnd[known] == 1, a[known]) if known.any() else float("nan")
    return out


def _mean_over_repeats(per_rep: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the repeats where it is defined (NaN where it is in none)."""
    out = {}
    for k in set().union(*per_rep):
        v = np.array([m.get(k, np.nan) for m in per_rep], dtype=np.float64)
        out[k] = float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")
    return out


@dataclass
class Comparison:
    names: list[str]
    point: dict[str, dict[str, float]]
    draws: dict[str, dict[str, np.ndarray]]  # name -> key -> (reps,)
    n_patients: int
    n_clips: int
    repeats: int


def compare(recipes: Sequence[Recipe], *, reps: int = 1000, seed: int = 0) -> Comparison:
    """Point estimates and patient-bootstrap draws of every recipe and reference row."""
    problems = check_paired(recipes)
    if problems:
        raise ValueError("the recipes were not tested on the same folds: " + "; ".join(problems))
    first = next(iter(recipes[0].repeats.values()))
    patients = sorted({str(r["group"]) for r in first.values()})
    tables = {r.name: _tables(r, patients) for r in recipes}
    ref = tables[recipes[0].name]
    tables[ALWAYS[0]] = {k: _constant(t, 0) for k, t in ref.items()}
    tables[ALWAYS[1]] = {k: _constant(t, 1) for k, t in ref.items()}
    tables[ORACLE] = {k: _oracle(t) for k, t in ref.items()}
    names = [r.name for r in recipes] + [*ALWAYS, ORACLE]
    point = {n: _mean_over_repeats([metrics(t) for t in tables[n].values()]) for n in names}
    rng = np.random.default_rng(seed)
    draws: dict[str, dict[str, list[float]]] = {n: defaultdict(list) for n in names}
    n_pat = len(patients)
    for _ in range(reps):
        count = np.bincount(rng.integers(0, n_pat, n_pat), minlength=n_pat)
        for n in names:
            per_rep = [metrics(t, count[t.patient]) for t in tables[n].values()]
            for k, v in _mean_over_repeats(per_rep).items():
                draws[n][k].append(v)
    return Comparison(
        names,
        point,
        {n: {k: np.asarray(v) for k, v in d.items()} for n, d in draws.items()},
        n_pat,
        len(first),
        len(ref),
    )


def _interval(v: np.ndarray) -> tuple[float, float]:
    if not np.isfinite(v).any():
        return float("nan"), float("nan")
    return float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))


def _cell(point: float, v: np.ndarray | None, *, signed: bool = False) -> str:
    if not np.isfinite(point):
        return "n/a"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    if v is None:
        return fmt.format(point)
    lo, hi = _interval(v)
    return f"{fmt.format(point)} ({fmt.format(lo)} to {fmt.format(hi)})"


def difference(c: Comparison, a: str, b: str, key: str) -> tuple[float, float, float]:
    """Paired difference a - b of ``key``: point estimate and 95 % interval."""
    lo, hi = _interval(c.draws[a][key] - c.draws[b][key])
    return c.point[a][key] - c.point[b][key], lo, hi


def _n_draws(c: Comparison) -> int:
    """How many patient resamples the intervals come from."""
    return len(next(iter(c.draws[c.names[0]].values())))


def report_lines(c: Comparison, *, reference: str | None = None) -> list[str]:
    """The Markdown of a comparison: metrics with intervals, then paired differences
    against ``reference`` (default: the first recipe) and against always 0."""
    reference = reference or c.names[0]
    models = [n for n in c.names if n not in (*ALWAYS, ORACLE)]
    aux_keys = [k for k in ("aux_auc_a_lines", "aux_auc_b_lines") if any(k in c.point[n] for n in models)]
    lines = [
        f"{count(c.n_clips, 'clip')} of {count(c.n_patients, 'patient')}, each tested once per repeat on a model "
        f"that never saw its patient; {count(c.repeats, 'repeat')} of the k-fold. Point estimates: the metric "
        "over all out-of-fold clips of a repeat, averaged over repeats. "
        f"95 % intervals: {_n_draws(c):,} resamples of the patients "
        "(the same resamples for every row, so differences are paired). AUC >= k: telling clips of score >= k from the "
        "others by the clip's risk (0.5 = chance). LUS-total Spearman: rank correlation over patients of the "
        "sum of their clip scores, model against experts. The oracle row gives each clip its patient's most "
        "common expert score: not a model, it shows how much of the score lies between patients.",
        "",
        "| recipe | " + " | ".join(LABELS[k] for k in (*ALL_KEYS, *aux_keys)) + " |",
        "|---" * (1 + len(ALL_KEYS) + len(aux_keys)) + "|",
    ]
    for n in c.names:
        cells = [_cell(c.point[n].get(k, np.nan), c.draws[n].get(k)) for k in (*ALL_KEYS, *aux_keys)]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    for base in dict.fromkeys([reference, ALWAYS[0]]):
        others = [n for n in models if n != base]
        if not others:
            continue
        lines += [
            f"Paired differences, recipe minus **{base}** (95 % interval; for MAE lower is better):",
            "",
            "| recipe | " + " | ".join(LABELS[k] for k in ALL_KEYS) + " |",
            "|---" * (1 + len(ALL_KEYS)) + "|",
        ]
        for n in others:
            cells = []
            for k in ALL_KEYS:
                d, lo, hi = difference(c, n, base, k)
                better = (hi < 0) if k in LOWER_IS_BETTER else (lo > 0)
                cell = "n/a" if not np.isfinite(d) else f"{d:+.3f} ({lo:+.3f} to {hi:+.3f})"
                cells.append(f"**{cell}**" if better and np.isfinite(d) else cell)
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines += ["", "Bold: the interval excludes zero in the recipe's favour.", ""]
    return lines


def write_repeated_report(
    dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    command: str = "",
    reference: str | None = None,
    reps: int = 1000,
    repeats: Sequence[int] | None = None,
    patients: Sequence[str] | None = None,
) -> Path:
    """Compare the recipes of ``dirs`` (only ``repeats`` of each, where given) and write
    the Markdown report to ``out`` (atomically); also ``<out stem>.csv`` with every row's
    point estimates."""
    recipes = load_recipes(dirs, repeats=repeats, patients=patients)
    names = [r.name for r in recipes] + [*ALWAYS, ORACLE]
    if reference is not None and reference not in names:  # before an expensive bootstrap
        raise ValueError(f"--reference {reference!r}: not one of {', '.join(names)}")
    c = compare(recipes, reps=reps)
    lines = ["# Repeated patient-grouped cross-validation: recipes compared", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Recipes: {', '.join(f'`{r.name}` ({r.source}, {r.folds} fold runs)' for r in recipes)}.", ""]
    short = [f"`{r.name}` {c}" for r in recipes for c in r.cut_short]
    if short:
        lines += [
            "**Warning: training cut short by the clock.** These fold runs stopped when their wall-clock budget "
            "ran out (`--cnn-minutes`, `--lstm-minutes`, `--e2e-minutes`), before the epochs of their recipe: "
            "they trained less than the others, so the comparison is not of the recipe as given. Move their "
            "fold folders aside and rerun them with a larger budget. " + "; ".join(short) + ".",
            "",
        ]
    if repeats is not None:
        only = sorted(set(repeats))
        which = f"{'repeat' if len(only) == 1 else 'repeats'} {', '.join(map(str, only))}"
        lines += [f"Only {which} of each recipe (`--repeats-only`).", ""]
    if patients is not None:
        lines += [
            f"Only the clips of {count(len(set(patients)), 'patient')} "
            f"(`--patients`: {', '.join(sorted(set(patients)))}), "
            "scored as in the whole cross-validation (nested rules fitted on every fold).",
            "",
        ]
    lines += report_lines(c, reference=reference)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    keys = sorted(set().union(*(c.point[n] for n in c.names)))
    csv_lines = ["recipe," + ",".join(keys)]
    for n in c.names:
        csv_lines.append(f'"{n}",' + ",".join(f"{c.point[n].get(k, np.nan):.4f}" for k in keys))
    csv = path.with_suffix(".csv")
    tmp = csv.with_name(csv.name + ".tmp")
    tmp.write_text("\n".join(csv_lines) + "\n")
    os.replace(tmp, csv)
    return path
