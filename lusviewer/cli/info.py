"""``lusviewer info``: the model card as Markdown (what the model is, what it was
trained on, how it scored), its weights' hash verified."""

from __future__ import annotations

import argparse
from typing import Any

from lusviewer.cli.common import EXIT_OK, EXIT_USAGE, Command, load_model_or_say
from lusviewer.cli.options import add_option
from lusviewer.wording import count


def _thousands(n: object) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def _clips(n: object) -> str:
    """A card's clip count in words; ``? clips`` where the card does not say."""
    return count(n, "clip") if isinstance(n, int) else "? clips"


def _card_lines(card: dict[str, Any]) -> list[str]:
    """What the model is and what it was trained on."""
    tr = card.get("training", {})
    split = tr.get("split", {})
    lines = [
        f"# {card['name']} {card.get('version', '')}".rstrip(),
        "",
        f"- architecture: `{card['architecture']['variant']}`, input {card['input']['size']} px, "
        f"{_thousands(card.get('parameters', {}).get('total'))} parameters",
        f"- weights: `{card['weights_file']}` ({card.get('weights_dtype', '?')}), sha256 `{card['sha256']}`",
        f"- training data: {tr.get('data', '?')}",
        f"- data licence: {tr.get('data_licence', '?')}; {tr.get('model_licence', '')}",
        f"- citation: {tr.get('citation', '?')}",
        f"- split: {split.get('kind', '?')}, seed {split.get('seed', '?')}: "
        f"{count(len(split.get('train_patients', [])), 'training patient')} ({_clips(split.get('train_clips'))}), "
        f"{count(len(split.get('val_patients', [])), 'validation patient')} ({_clips(split.get('val_clips'))})",
        f"- command: `{tr.get('command', '?')}`",
    ]
    inference = card.get("inference", {})
    if inference.get("recon_error_limit") is not None:
        lines.append(
            f"- familiarity check: a clip whose mean reconstruction error is above "
            f"{inference['recon_error_limit']:.3f} is flagged as unlike the training clips"
            + (f" ({inference['recon_error_check']})" if inference.get("recon_error_check") else "")
        )
    rule = inference.get("clip_rule")
    if isinstance(rule, dict):
        cuts = " / ".join(f"{t:.3f}" for t in rule.get("thresholds", []))
        lines.append(
            f"- clip score: the {rule.get('rule', '?')} rule, the clip's expected severity cut at {cuts}"
            + (f" ({inference['clip_rule_check']})" if inference.get("clip_rule_check") else "")
        )
    elif isinstance(rule, str):
        lines.append(f"- clip score: the {rule} rule")
    if inference.get("temperature") is not None:
        ece = card.get("metrics", {}).get("calibration", {})
        lines.append(
            f"- calibration: logits divided by {inference['temperature']:.3f}"
            + (f" (ECE {ece['ece_before']:.3f} -> {ece['ece_after']:.3f})" if "ece_after" in ece else "")
        )
    if inference.get("findings_shown"):
        found = card.get("metrics", {}).get("findings", {})
        shown = []
        for name in inference["findings_shown"]:
            f = found.get(name, {})
            auc = f" (AUC {f['auc']:.3f}, {f['ci'][0]:.3f} to {f['ci'][1]:.3f})" if "auc" in f and "ci" in f else ""
            shown.append(name.replace("_", "-") + auc)
        lines.append(f"- findings shown: {', '.join(shown)}")
    return [*lines, ""]


#: The repeated cross-validation's clip metrics, as :func:`_repeated_cv_table` prints them.
CV_KEYS = (
    ("qwk", "QWK"),
    ("mae", "MAE"),
    ("exact", "exact"),
    ("within_one", "within-one"),
    ("auc_ge1", "AUC >=1"),
    ("auc_ge2", "AUC >=2"),
    ("auc_ge3", "AUC >=3"),
    ("lus_total_spearman", "LUS-total Spearman"),
)


def _repeated_cv_table(metrics: dict[str, Any]) -> list[str]:
    """The recipe's repeated, patient-grouped cross-validation (``metrics.repeated_cv``)."""
    cv = metrics.get("repeated_cv")
    if not isinstance(cv, dict):
        return []
    lines = [
        "Repeated cross-validation of the recipe (patients the models never saw; 95 % patient-bootstrap interval):",
        "",
        "| clip metric | estimate | interval |",
        "|---|---|---|",
    ]
    for key, label in CV_KEYS:
        v = cv.get(key)
        if isinstance(v, list) and len(v) == 3:
            lines.append(f"| {label} | {v[0]:.3f} | {v[1]:.3f} to {v[2]:.3f} |")
    lines += ["", str(cv.get("what", "")), ""]
    return lines


def _validation_table(metrics: dict[str, Any], variant: object = "cnn_lstm") -> list[str]:
    """The validation metrics of the model, its CNN alone (the hybrid's) and the majority baseline.
    A model without an LSTM (``variant`` compact, cnn, densenet) is its CNN: its row says so
    rather than "CNN alone", which reads as a part of a larger model."""
    rows = []
    base = metrics.get("baselines", {})
    cnn = "CNN alone" if variant == "cnn_lstm" else f"the model ({variant})"
    for label, key, level in [
        ("CNN+LSTM", "cnn_lstm", "frame"),
        (cnn, "cnn", "frame"),
        ("CNN+LSTM", "cnn_lstm", "clip"),
        (cnn, "cnn", "clip"),
        ("CNN+LSTM, majority rule", "cnn_lstm", "clip_majority_rule"),
    ]:
        m = metrics.get(key, {}).get(level)
        if m:
            rows.append((label, level.replace("_", " "), m))
    for level in ("frame", "clip"):
        m = base.get(f"majority_{level}")
        if m:
            rows.append((f"always score {base.get('majority_class', '?')} (majority class)", level, m))
    if not rows:
        return []
    lines = [
        "Validation patients (held out from training):",
        "",
        "| model | level | n | accuracy | macro-F1 | sensitivity | specificity | within-one | QWK |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, level, m in rows:
        lines.append(
            f"| {label} | {level} | {int(m['n'])} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | "
            f"{m['sensitivity']:.3f} | {m['specificity']:.3f} | {m['within_one']:.3f} | {m['qwk']:.3f} |"
        )
    return [*lines, ""]


def _crossval_tables(metrics: dict[str, Any]) -> list[str]:
    """Each cross-validation the card records (crossval, crossval_<other run>)."""
    from lusviewer.model.hybrid import VARIANT_NAMES

    lines: list[str] = []
    for key in sorted(k for k in metrics if k.startswith("crossval")):
        cv = metrics[key]
        if not isinstance(cv, dict) or not cv.get("results"):
            continue
        names = {**VARIANT_NAMES, "majority": "majority"}
        lines += [
            f"Cross-validation{' (' + cv['title'] + ')' if cv.get('title') else ''} (mean ± sd over folds):",
            "",
            "| model | level | accuracy | macro-F1 | within-one | QWK |",
            "|---|---|---|---|---|---|",
        ]
        for variant, levels in cv["results"].items():
            for level, m in levels.items():
                keys = ("accuracy", "macro_f1", "within_one", "qwk")
                cells = " | ".join(f"{m[k][0]:.3f} ± {m[k][1]:.3f}" for k in keys)
                lines.append(f"| {names.get(variant, variant)} | {level} | {cells} |")
        lines += ["", cv.get("note", ""), f"Command: `{cv.get('command', '?')}`", ""]
    return lines


def model_summary(card: dict[str, Any]) -> str:
    """The model card as Markdown: what it is, what it was trained on, how it scored."""
    metrics = card.get("metrics", {})
    variant = card.get("architecture", {}).get("variant", "cnn_lstm")
    lines = _card_lines(card) + _repeated_cv_table(metrics) + _validation_table(metrics, variant)
    if metrics.get("note"):
        lines += [metrics["note"], ""]
    return "\n".join(lines + _crossval_tables(metrics))


def add_arguments(i: argparse.ArgumentParser) -> None:
    add_option(i, "--model")


def run(args: argparse.Namespace) -> int:
    import json

    from lusviewer.resources import default_model_path

    loaded = load_model_or_say(args.model or str(default_model_path()))  # verifies the sha256
    if loaded is None:
        return EXIT_USAGE
    card = json.loads(loaded.card_path.read_text())
    print(model_summary(card))
    print(f"(loaded from {loaded.card_path}; sha256 verified)")
    return EXIT_OK


COMMAND = Command(
    name="info",
    help="show the model card (hash verified): what the model is, training data, licence, measured performance",
    add_arguments=add_arguments,
    run=run,
)
