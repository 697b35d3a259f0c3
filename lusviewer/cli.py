"""Command line: ``lusviewer score|train|info``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from lusviewer import __version__

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def _err(msg: str) -> None:
    print(f"lusviewer: {msg}", file=sys.stderr, flush=True)


def _score(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from lusviewer.inference import ScoringEngine
    from lusviewer.io import ClipError, find_clips, open_clip
    from lusviewer.model import ModelError, load_model
    from lusviewer.report import Exam, ExamEntry, ReportWriter, clips_path_for, output_problem, write_exam_csv
    from lusviewer.resources import default_model_path

    if args.exam and Path(args.exam).resolve() in {Path(args.output).resolve(), clips_path_for(args.output).resolve()}:
        _err(f"--exam {args.exam} would overwrite the report: choose another file")
        return EXIT_USAGE
    clips: list[str] = []
    failed = 0
    for p in args.paths:
        found = find_clips(p)
        if Path(p).is_dir() and not found:
            _err(f"{p}: no supported clips in this folder")
            failed += 1
        clips.extend(found)
    # The outputs are checked before any work: a report that cannot be written, or one
    # that would overwrite an input, is refused now rather than after scoring.
    for out in (args.output, clips_path_for(args.output), *([args.exam] if args.exam else [])):
        problem = output_problem(out, inputs=[*clips, *args.paths])
        if problem:
            _err(f"error: cannot write the report: {problem}")
            return EXIT_USAGE
    model_path = args.model or str(default_model_path())
    try:
        loaded = load_model(model_path)
        engine = ScoringEngine(
            loaded, device=args.device, precision=args.precision, batch_size=args.batch_size, rule=args.rule
        )
    except (ModelError, ValueError) as exc:
        _err(f"cannot load the model: {exc}")
        return EXIT_USAGE
    if not args.quiet:
        _err(f"model {loaded.card.display_name} ({loaded.weights_path.name}) on {engine.description}")
    exam = Exam(args.exam_zones)
    with ReportWriter(args.output) as writer:
        for path in clips:
            try:
                reader = open_clip(path)
            except ClipError as exc:
                _err(f"error: {exc}")
                failed += 1
                exam.not_scored.append(path)
                continue
            except Exception as exc:  # a reader's unforeseen failure must not end the run
                _err(f"error: {path}: cannot be opened ({type(exc).__name__}: {exc})")
                failed += 1
                exam.not_scored.append(path)
                continue
            bar = tqdm(
                total=reader.info.frame_count,
                desc=Path(path).name[:40],
                unit="frame",
                disable=args.quiet,
                file=sys.stderr,
            )

            def progress(done: int, total: int, bar: tqdm = bar) -> None:  # type: ignore[type-arg]
                bar.total = max(total, done)
                bar.n = done
                bar.refresh()

            try:
                with reader:  # reader.info.path is the path as given: the report's `clip`
                    result = engine.score_clip(reader, progress=progress)
            except ClipError as exc:
                bar.close()
                _err(f"error: {exc}")
                failed += 1
                exam.not_scored.append(path)
                continue
            except Exception as exc:  # one clip's failure never loses the others
                bar.close()
                _err(f"error: {path}: could not be scored ({type(exc).__name__}: {exc})")
                failed += 1
                exam.not_scored.append(path)
                continue
            bar.set_postfix_str(f"clip score {result.summary.clip_score}", refresh=True)
            bar.close()
            if result.unfamiliar:  # warned even with -q: it changes how the scores may be read
                _err(f"warning: {path}: {result.familiarity_warning}")
            writer.add(result)
            exam.add(ExamEntry.from_result(result))
        if writer.n_clips:
            try:
                writer.commit()
            except OSError as exc:
                _err(f"error: {writer.path}: the report could not be written ({exc}); an earlier report is kept")
                return EXIT_SOME_FAILED
            if not args.quiet:
                _err(f"wrote {writer.path} and {writer.clips_path} ({writer.n_clips} clips)")
            if args.exam:
                try:
                    write_exam_csv(args.exam, exam)
                except OSError as exc:
                    _err(f"error: {args.exam}: the exam could not be written ({exc})")
                    return EXIT_SOME_FAILED
                _err(f"exam: {exam.summary()}; wrote {args.exam}")
        else:
            _err("no clip could be scored; no report written")
            return EXIT_SOME_FAILED
    if failed:
        _err(f"{failed} input(s) could not be scored (see above); the report holds the others")
        return EXIT_SOME_FAILED
    return EXIT_OK


def _thousands(n: object) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def model_summary(card: dict[str, Any]) -> str:
    """The model card as Markdown: what it is, what it was trained on, how it scored."""
    from lusviewer.model.hybrid import VARIANT_NAMES

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
        f"{len(split.get('train_patients', []))} training patients ({split.get('train_clips', '?')} clips), "
        f"{len(split.get('val_patients', []))} validation patients ({split.get('val_clips', '?')} clips)",
        f"- command: `{tr.get('command', '?')}`",
    ]
    inference = card.get("inference", {})
    if inference.get("recon_error_limit") is not None:
        lines.append(
            f"- familiarity check: a clip whose mean reconstruction error is above "
            f"{inference['recon_error_limit']:.3f} is flagged as unlike the training clips"
            + (f" ({inference['recon_error_check']})" if inference.get("recon_error_check") else "")
        )
    lines.append("")
    metrics = card.get("metrics", {})
    rows = []
    base = metrics.get("baselines", {})
    for label, key, level in [
        ("CNN+LSTM", "cnn_lstm", "frame"),
        ("CNN alone", "cnn", "frame"),
        ("CNN+LSTM", "cnn_lstm", "clip"),
        ("CNN alone", "cnn", "clip"),
        ("CNN+LSTM, majority rule", "cnn_lstm", "clip_majority_rule"),
    ]:
        m = metrics.get(key, {}).get(level)
        if m:
            rows.append((label, level.replace("_", " "), m))
    for level in ("frame", "clip"):
        m = base.get(f"majority_{level}")
        if m:
            rows.append((f"always score {base.get('majority_class', '?')} (majority class)", level, m))
    if rows:
        lines += [
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
        lines.append("")
    if metrics.get("note"):
        lines += [metrics["note"], ""]
    for key in sorted(k for k in metrics if k.startswith("crossval")):  # crossval, crossval_<other run>
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
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    import json

    from lusviewer.model import ModelError, load_model
    from lusviewer.resources import default_model_path

    path = args.model or str(default_model_path())
    try:
        loaded = load_model(path)  # verifies the sha256
    except ModelError as exc:
        _err(f"cannot load the model: {exc}")
        return EXIT_USAGE
    card = json.loads(loaded.card_path.read_text())
    print(model_summary(card))
    print(f"(loaded from {loaded.card_path}; sha256 verified)")
    return EXIT_OK


def self_test(model: str | None = None) -> int:
    """Load the shipped model (hash verified), score the bundled sample, check the
    result, print one line. Exit 0 when all is well, 1 with the reason otherwise."""
    import time

    import numpy as np

    from lusviewer.inference import ScoringEngine
    from lusviewer.io import open_clip
    from lusviewer.model import load_model
    from lusviewer.resources import default_model_path, sample_clip_path

    t0 = time.perf_counter()
    try:
        loaded = load_model(model or default_model_path())
        engine = ScoringEngine(loaded)
        sample = sample_clip_path()
        with open_clip(sample) as clip:
            n = clip.info.frame_count
            result = engine.score_clip(clip)
        problems = []
        if len(result.scores) != n:
            problems.append(f"{len(result.scores)} frames scored of {n}")
        if not np.allclose(result.probs.sum(1), 1.0, atol=1e-3):
            problems.append("probabilities do not sum to 1")
        if not np.all(np.isfinite(result.recon_error)):
            problems.append("reconstruction error missing")
        if problems:
            raise RuntimeError("; ".join(problems))
    except Exception as exc:
        print(f"lusviewer self-test FAILED: {type(exc).__name__}: {exc}", flush=True)
        return 1
    print(
        f"lusviewer self-test ok: {loaded.card.display_name} (sha256 {loaded.card.sha256[:12]}, verified) "
        f"scored {n} frames of {sample.name} on {engine.description} in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from collections import Counter

    from tqdm import tqdm

    from lusviewer.model import ModelError, load_model
    from lusviewer.resources import default_model_path
    from lusviewer.training.data import load_dataset_with
    from lusviewer.training.evaluate import evaluate_model, write_eval_report

    try:
        loaded = load_model(args.model or str(default_model_path()))
    except ModelError as exc:
        _err(f"cannot load the model: {exc}")
        return EXIT_USAGE
    if Path(args.output).exists() and not Path(args.output).is_dir():
        _err(f"-o {args.output}: is a file; expected a folder for the report")
        return EXIT_USAGE
    try:
        clips = load_dataset_with(args)
    except _data_errors() as exc:
        _err(f"cannot read the data: {_data_error(exc).removeprefix('error: ')}")
        return EXIT_USAGE
    split = loaded.card.training.get("split", {})
    if args.card_val_patients:
        val = set(split.get("val_patients", []))
        if not val:
            _err("the model card names no validation patients")
            return EXIT_USAGE
        clips = [c for c in clips if c.group in val]
        if not clips:
            _err(
                "no clip of this data belongs to the card's validation patients "
                f"({', '.join(sorted(val)[:8])}{'…' if len(val) > 8 else ''}): is it the same data, "
                "with the same patient rule (--group-by / --group-column) as in training?"
            )
            return EXIT_USAGE
    seen = set(split.get("train_patients", []))
    trained_on = [c for c in clips if c.group in seen]
    if trained_on:  # their scores measure fitting, not generalisation
        _err(
            f"warning: {len(trained_on)} of the {len(clips)} clips belong to the model's own training patients "
            f"(from its card: {len({c.group for c in trained_on})} patients); their metrics are no test. "
            "--card-val-patients keeps only the held-out ones."
        )
    if args.baseline_score is not None:
        baseline, source = args.baseline_score, "given with --baseline-score"
    else:
        card_major = loaded.card.metrics.get("baselines", {}).get("majority_class")
        if card_major is not None:
            baseline, source = int(card_major), "the most common score of the model's training clips, from its card"
        else:
            baseline = Counter(c.score for c in clips).most_common(1)[0][0] if clips else 0
            source = "the most common score of the evaluated clips"
    bar = tqdm(total=len(clips), unit="clip", disable=args.quiet, file=sys.stderr)
    result = evaluate_model(
        loaded,
        clips,
        device=args.device,
        batch_size=args.batch_size,
        rule=args.rule,
        on_clip=lambda i, n, path: (bar.update(1 if i else 0), bar.set_description(Path(path).name[:30])),
        baseline_score=baseline,
        baseline_source=source,
        bootstrap_reps=args.bootstrap,
    )
    bar.update(1)
    bar.close()
    report = write_eval_report(result, args.output, command=shlex.join(["lusviewer", *sys.argv[1:]]))
    for failure in result.failed:
        _err(f"error: {failure}")
    print(report.read_text())
    return EXIT_SOME_FAILED if result.failed else EXIT_OK


def _train_config(args: argparse.Namespace) -> Any:
    from lusviewer.training.data import data_options
    from lusviewer.training.train import TrainConfig

    return TrainConfig(
        **data_options(args),
        out=args.out,
        work_dir=getattr(args, "work_dir", "runs/train"),
        cache_dir=args.cache_dir,
        variant=getattr(args, "variant", "cnn_lstm"),
        tiny=args.tiny,
        seed=args.seed,
        val_fraction=args.val_fraction,
        frames_per_clip=args.frames_per_clip,
        augment_padding=args.augment_padding,
        loss=args.loss,
        batch_size=args.batch_size,
        input_size=args.input_size,
        optimizer=args.optimizer,
        lr=args.lr if args.lr is not None else (2e-3 if args.optimizer == "adam" else 1e-3),
        early_stop=args.early_stop,
        e2e_epochs=args.end_to_end_epochs,
        e2e_minutes=args.end_to_end_minutes,
        e2e_lr=args.end_to_end_lr,
        cnn_epochs=args.cnn_epochs,
        cnn_minutes=args.cnn_minutes,
        lstm_epochs=args.lstm_epochs,
        lstm_minutes=args.lstm_minutes,
        bf16=not args.fp32,
        threads=args.threads,
        device=args.device,
        init_densenet=args.init_densenet,
        pretrain_epochs=args.pretrain_epochs,
        pretrain_minutes=args.pretrain_minutes,
        data_name=args.data_name,
        data_licence=args.data_licence,
        citation=args.citation,
        name=getattr(args, "name", "lusviewer-hybrid"),
        version=getattr(args, "model_version", "1"),
    )


def _data_error(exc: BaseException) -> str:
    """One line for a researcher: what is wrong with the data or the options, no traceback."""
    from lusviewer.io import ClipError

    if isinstance(exc, ClipError):
        return f"error: cannot read {exc}; fix or remove that clip from the labels"
    if isinstance(exc, OSError) and exc.filename:
        return f"error: {exc.filename}: {exc.strerror or exc}"
    return f"error: {exc}"


def _data_errors() -> tuple[type[BaseException], ...]:
    """Failures of the data or options that the training commands report in one line
    (anything else is a bug, and keeps its traceback)."""
    from lusviewer.io import ClipError

    return (ValueError, ClipError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def _check_training_paths(args: argparse.Namespace, *folders: str) -> str | None:
    """Options the training commands would otherwise fail on after the work: folders
    that are files, validation fractions outside (0, 1), zero epochs."""
    for name in folders:
        value = getattr(args, name, None)
        if value and Path(value).exists() and not Path(value).is_dir():
            return f"--{name.replace('_', '-')} {value}: is a file; expected a folder"
    vf = getattr(args, "val_fraction", None)
    if vf is not None and not 0 < vf < 1:
        return f"--val-fraction {vf}: must be between 0 and 1 (validation patients pick the best epoch)"
    if getattr(args, "cnn_epochs", 1) < 1:
        return "--cnn-epochs must be at least 1"
    return None


def _train(args: argparse.Namespace) -> int:
    from lusviewer.training.train import run_training

    problem = _check_training_paths(args, "out", "work_dir", "cache_dir")
    if problem:
        _err(problem)
        return EXIT_USAGE
    try:
        run_training(_train_config(args))
    except _data_errors() as exc:
        _err(_data_error(exc))
        return EXIT_USAGE
    return 0


def _crossval(args: argparse.Namespace) -> int:
    from lusviewer.training.crossval import run_crossval

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    bad = [v for v in variants if v not in ("densenet", "cnn", "cnn_lstm")]
    if bad:
        _err(f"unknown variant(s) {bad}; choose from densenet, cnn, cnn_lstm")
        return EXIT_USAGE
    only = None
    if args.run_folds is not None:
        try:
            only = sorted({int(f) for f in args.run_folds.split(",") if f.strip()})
            if not only:
                raise ValueError("no fold")
        except ValueError:
            _err(f"--run-folds {args.run_folds!r}: expected fold numbers such as 0,1")
            return EXIT_USAGE
        if any(not 0 <= f < args.folds for f in only):
            _err(f"--run-folds {args.run_folds!r}: folds are numbered 0..{args.folds - 1}")
            return EXIT_USAGE
    problem = _check_training_paths(args, "out", "cache_dir")
    if problem:
        _err(problem)
        return EXIT_USAGE
    try:
        report = run_crossval(_train_config(args), k=args.folds, variants=variants, only_folds=only)
    except _data_errors() as exc:
        _err(_data_error(exc))
        return EXIT_USAGE
    if report is None:
        print(
            f"{args.out}: folds {','.join(map(str, only or []))} done; for the report, run the same command "
            "without --run-folds once every fold is done"
        )
        return 0
    print(report.read_text())
    return EXIT_OK


def _pretrain(args: argparse.Namespace) -> int:
    from lusviewer.training.data import data_options
    from lusviewer.training.pretrain import PretrainConfig, run_pretrain

    if not args.out.endswith(".safetensors"):
        _err(f"--out {args.out}: expected a .safetensors path (the card goes beside it as .json)")
        return EXIT_USAGE
    cfg = PretrainConfig(
        **data_options(args),
        out=args.out,
        work_dir=args.work_dir,
        cache_dir=args.cache_dir,
        extra=list(args.extra or []),
        tiny=args.tiny,
        seed=args.seed,
        val_fraction=args.val_fraction,
        input_size=args.input_size,
        frames_per_clip=args.frames_per_clip,
        batch_size=args.batch_size,
        epochs=args.epochs,
        minutes=args.minutes,
        lr=args.lr,
        probe=not args.no_probe,
        bf16=not args.fp32,
        threads=args.threads,
        device=args.device,
    )
    problem = _check_training_paths(args, "work_dir", "cache_dir")
    if problem or Path(args.out).is_dir():
        _err(problem or f"--out {args.out}: is a folder; expected a .safetensors file path")
        return EXIT_USAGE
    try:
        run_pretrain(cfg)
    except _data_errors() as exc:
        _err(_data_error(exc))
        return EXIT_USAGE
    return EXIT_OK


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="COVID-BLUeS folder (severity.csv + videos/), a folder of clips with --labels, "
        "or ICLUS-style frame folders (frame names carry Score<N>)",
    )
    p.add_argument("--layout", default="auto", choices=["auto", "covid-blues", "csv", "iclus"])
    p.add_argument("--labels", default=None, help="CSV with columns clip, score (paths relative to --data)")
    p.add_argument("--group-column", default=None, help="column of --labels holding the patient id")
    p.add_argument(
        "--group-by",
        default=None,
        metavar="REGEX",
        help="patient id from each clip's name (first group of REGEX); default: patient_<ID>",
    )
    p.add_argument("--frame-labels", default=None, help="CSV clip, frame, score: per-frame labels")


def _add_training_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    t.add_argument("--data-name", default=None, help="what the data is, for the model card")
    t.add_argument("--data-licence", default=None, help="the data's licence, for the model card")
    t.add_argument("--citation", default=None, help="how to cite the data, for the model card")
    t.add_argument("--cache-dir", default=None, help="keep decoded frames here (.npy, per input size)")
    t.add_argument("--tiny", action="store_true", help="tiny architecture (smoke tests)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--val-fraction", type=float, default=0.2, help="share of patients held out")
    t.add_argument("--frames-per-clip", type=int, default=16, help="frames sampled per clip per epoch")
    t.add_argument(
        "--augment-padding",
        default="zeros",
        choices=["zeros", "reflection", "border"],
        help="what fills the margins a shift or zoom-out uncovers (default zeros: black)",
    )
    t.add_argument(
        "--loss",
        default="frame",
        choices=["frame", "mil"],
        help="with per-clip labels: frame = every frame takes its clip's score (cross-entropy); "
        "mil = a clip is scored by its worst frame (multiple-instance ordinal loss: no frame above "
        "the clip's score, at least one at it; stage 1 on whole clips' sampled frames, stage 2 on "
        "whole clips; best epochs by validation clip macro-F1; the end-to-end stage keeps the frame loss)",
    )
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument(
        "--input-size",
        type=int,
        default=128,
        help="frame size in pixels, a multiple of 16 (default 128, the paper's; smaller is faster)",
    )
    t.add_argument(
        "--optimizer",
        default="adam",
        choices=["adam", "adamw"],
        help="stage 1: adam = the paper's (Adam, eps 0.1, lr x0.5 after 5 epochs without a better "
        "validation macro-F1); adamw = AdamW with warm-up and cosine decay over --cnn-epochs or "
        "--cnn-minutes, whichever ends first",
    )
    t.add_argument("--lr", type=float, default=None, help="stage 1 learning rate (default: 0.002 adam, 0.001 adamw)")
    t.add_argument(
        "--early-stop",
        type=int,
        default=12,
        metavar="EPOCHS",
        help="stop stage 1 after this many epochs without a better validation macro-F1",
    )
    t.add_argument("--cnn-epochs", type=int, default=70)
    t.add_argument("--cnn-minutes", type=float, default=60.0, help="wall-clock budget of stage 1")
    t.add_argument("--lstm-epochs", type=int, default=120)
    t.add_argument("--lstm-minutes", type=float, default=10.0, help="wall-clock budget of stage 2")
    t.add_argument(
        "--end-to-end-epochs",
        type=int,
        default=0,
        help="cnn_lstm: after the two stages, fine-tune CNN and LSTM together for up to N epochs (default 0: off)",
    )
    t.add_argument("--end-to-end-minutes", type=float, default=30.0, help="wall-clock budget of the end-to-end stage")
    t.add_argument("--end-to-end-lr", type=float, default=1e-4)
    t.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    t.add_argument(
        "--init-densenet",
        default=None,
        metavar="PTH",
        help="initialise the DenseNet-201 branch from a torchvision state dict you supply "
        "(e.g. ImageNet densenet201-c1103571.pth; .pth read with weights_only, or .safetensors) "
        "or from `lusviewer pretrain` (refused where it saw a held-out patient's images)",
    )
    t.add_argument(
        "--pretrain-epochs",
        type=int,
        default=0,
        metavar="N",
        help="first pretrain the DenseNet branch for N epochs (SimSiam, as `lusviewer pretrain`) on the frames of "
        "this run's training patients, crossval: of each fold's; 0 (default): off",
    )
    t.add_argument("--pretrain-minutes", type=float, default=60.0, help="wall-clock budget of that pretraining")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lusviewer",
        description="Lung-ultrasound severity scoring (0-3). Research software, not a medical device.",
    )
    p.add_argument("--version", action="version", version=f"lusviewer {__version__}")
    p.add_argument(
        "--self-test",
        action="store_true",
        help="load the shipped model, score the bundled sample clip, print one line (exit 0 = ok)",
    )
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser(
        "score",
        help="score clips (files or folders) and write a per-frame CSV report",
        description=(
            "Score every frame of each clip and write REPORT (one row per frame) and "
            "REPORT_clips.csv (one row per clip). Exit status: 0 all inputs scored; "
            "1 some input could not be scored (the others are in the report); 2 usage "
            "error or the model cannot be loaded (no report)."
        ),
    )
    s.add_argument("paths", nargs="+", metavar="PATH", help="a clip, or a folder of clips (searched recursively)")
    s.add_argument("-o", "--output", default="report.csv", help="per-frame report (default: report.csv)")
    s.add_argument("--model", default=None, help="model card .json or its .safetensors (default: shipped model)")
    s.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    s.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--rule", default="persistent", choices=["persistent", "majority", "max"], help="clip score rule")
    s.add_argument(
        "--exam",
        default=None,
        metavar="CSV",
        help="also write the clips as one patient's exam: one row per clip (zone) and their LUS score total",
    )
    s.add_argument(
        "--exam-zones",
        type=int,
        choices=[6, 14],
        default=None,
        help="the exam's protocol: 6 zones (BLUE points) or 14 (Soldati); the total is then out of 18 or 42, "
        "and an exam with fewer clips is marked incomplete (default: out of the zones scored)",
    )
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_score)

    i = sub.add_parser("info", help="show the model card: training data, licence, validation metrics")
    i.add_argument("--model", default=None, help="model card .json or its .safetensors (default: shipped model)")
    i.set_defaults(func=_info)

    e = sub.add_parser("evaluate", help="score labelled clips with a model; metrics, report.md, confusion PNGs")
    _add_data_args(e)
    e.add_argument("--model", default=None, help="model card .json (default: shipped model)")
    e.add_argument("-o", "--output", default="evaluation", help="folder for metrics.csv, report.md, PNGs")
    e.add_argument("--device", default="auto")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--rule", default="persistent", choices=["persistent", "majority", "max"])
    e.add_argument(
        "--card-val-patients",
        action="store_true",
        help="only the validation patients named in the model card (reproduces the card's numbers)",
    )
    e.add_argument(
        "--baseline-score",
        type=int,
        choices=[0, 1, 2, 3],
        default=None,
        help="compare with always answering this score (default: the majority score of the model's "
        "training clips, from its card)",
    )
    e.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        metavar="N",
        help="resamples of the patients for 95%% intervals (default 2000; 0: none)",
    )
    e.add_argument("-q", "--quiet", action="store_true")
    e.set_defaults(func=_evaluate)

    cv = sub.add_parser(
        "crossval",
        help="patient-disjoint k-fold cross-validation of densenet, cnn and cnn_lstm; report.md like Table 2",
    )
    cv.add_argument("--out", default="runs/crossval", help="folder for report.md, metrics.csv, PNGs, checkpoints")
    cv.add_argument("-k", "--folds", type=int, default=5)
    cv.add_argument("--variants", default="densenet,cnn,cnn_lstm")
    cv.add_argument(
        "--run-folds",
        default=None,
        metavar="LIST",
        help="train only these folds (0-based, e.g. 0,1) in this process, to run folds in parallel on "
        "several GPUs or machines sharing --out; a run without it then writes the report",
    )
    _add_data_args(cv)
    _add_training_args(cv)
    cv.set_defaults(func=_crossval)

    t = sub.add_parser("train", help="train the CNN, then the LSTM on frozen CNN features")
    _add_data_args(t)
    t.add_argument("--out", default="runs/model", help="folder for the .safetensors + .json card")
    t.add_argument("--work-dir", default="runs/train", help="checkpoints; rerun to resume")
    t.add_argument("--variant", default="cnn_lstm", choices=["densenet", "cnn", "cnn_lstm"])
    t.add_argument("--name", default="lusviewer-hybrid")
    t.add_argument("--model-version", default="1")
    _add_training_args(t)
    t.set_defaults(func=_train)

    pt = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining of the DenseNet-201 branch on LUS frames (SimSiam), for --init-densenet",
        description="Learns the DenseNet-201 branch from unlabelled LUS frames (SimSiam): the frames of the "
        "training patients of the split that `lusviewer train` makes with the same --seed and --val-fraction "
        "(their labels unused), plus any --extra folders of clips. Writes OUT.safetensors (torchvision key "
        "names, for `lusviewer train --init-densenet OUT.safetensors`) and OUT.json (recipe, data, sha256, and "
        "a linear probe of the frozen features against a random initialisation on the validation patients).",
    )
    _add_data_args(pt)
    pt.add_argument("--out", required=True, help="the .safetensors to write; its card goes beside it")
    pt.add_argument("--work-dir", default="runs/pretrain", help="checkpoints; rerun to resume")
    pt.add_argument(
        "--extra", action="append", metavar="FOLDER", help="a folder of unlabelled clips to learn from too (repeat)"
    )
    pt.add_argument("--cache-dir", default=None, help="keep decoded frames here (.npy, per input size)")
    pt.add_argument("--tiny", action="store_true", help="tiny architecture (smoke tests)")
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--val-fraction", type=float, default=0.2, help="share of patients held out (as in train)")
    pt.add_argument("--input-size", type=int, default=128, help="frame size in pixels, a multiple of 16")
    pt.add_argument("--frames-per-clip", type=int, default=16, help="frames sampled per clip per epoch")
    pt.add_argument("--batch-size", type=int, default=64, help="pairs of views per batch")
    pt.add_argument("--epochs", type=int, default=100)
    pt.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget (the cosine decay follows it)")
    pt.add_argument("--lr", type=float, default=0.05, help="base learning rate, scaled by batch size / 256")
    pt.add_argument("--no-probe", action="store_true", help="skip the linear probe at the end")
    pt.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    pt.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    pt.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    pt.set_defaults(func=_pretrain)
    return p


SUBCOMMANDS = ("score", "train", "info", "evaluate", "crossval", "pretrain")


def threading_main() -> bool:
    """Signal handlers can only be set from the main thread (tests call ``run`` from others)."""
    import threading

    return threading.current_thread() is threading.main_thread()


def run(argv: list[str]) -> int:
    if argv[:1] == ["--self-test"]:
        return self_test(argv[2] if argv[1:2] == ["--model"] and len(argv) > 2 else None)
    if not argv or (argv[0] not in SUBCOMMANDS and not argv[0].startswith("-")) or argv[0] == "--model":
        # `lusviewer` or `lusviewer CLIP [--model CARD]`: the desktop viewer.
        gui = argparse.ArgumentParser(prog="lusviewer", description="LUS Viewer (desktop app)")
        gui.add_argument("clip", nargs="?", default=None)
        gui.add_argument("--model", default=None)
        a = gui.parse_args(argv)
        from lusviewer.ui.app import run_gui

        return run_gui(a.clip, a.model)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    import signal

    def terminated(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: temporary files removed, earlier reports kept

    previous = signal.signal(signal.SIGTERM, terminated) if threading_main() else None
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        resumable = args.func in (_train, _crossval, _pretrain)
        print(
            "lusviewer: interrupted" + ("; rerun the same command to resume" if resumable else ""),
            file=sys.stderr,
        )
        return 130
    finally:
        if previous is not None:  # a caller's own handler (run() used as a library) is put back
            signal.signal(signal.SIGTERM, previous)
