"""Where the shipped model's Grad-CAM looks, on the validation patients of its card.

    python scripts/gradcam_corners.py [--model CARD] [--data ../shared/data/covid-blues]   # any card
    python scripts/gradcam_corners.py --work-dir RUN_WORK_DIR [--checkpoint cnn_last]   # a stage-1 CNN
    ... [--padded]        # each frame set in a black border a quarter of its size: peaks in that border?
    ... [--random-init]   # the same architecture untrained (seed 0): what the method alone gives

For the middle frame of each validation clip: is the map's peak within 10 % of an image
corner, and what share of the map lies on black, echo-free background
(:func:`lusviewer.inference.saliency.share_on_background`)? Needs the real data.

A model that sees the ultrasound sector only (card ``input.crop: sector``; ``--crop sector``
for a work dir's CNN) gets each clip's frame cropped to the clip's sector, found on its
first ``SECTOR_FRAMES`` frames as the engine finds it, and its map back on the frame.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from lusviewer.inference.saliency import grad_cam, share_on_background
from lusviewer.io import ClipError, open_clip
from lusviewer.model import load_model
from lusviewer.model.preprocess import Sector, model_frames
from lusviewer.resources import default_model_path
from lusviewer.training.data import load_covid_blues


def stage1_cnn(work: Path, checkpoint: str) -> tuple[Any, set[str] | None, str]:
    """The CNN of a work dir's stage-1 checkpoint, the validation patients of its split,
    and its crop ("none" unless the run's config says "sector")."""
    from lusviewer.model import HybridModel
    from lusviewer.training.config import TrainConfig, model_config
    from lusviewer.training.data import load_dataset_with, split_by_group
    from lusviewer.training.loop import load_state

    state = json.loads((work / "state.json").read_text())
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in state["config"].items() if k in known})
    model = HybridModel(model_config(cfg))
    load_state(work / f"{checkpoint}.safetensors", model.cnn)
    crop = str(state["config"].get("crop") or "none")
    if "fold" in state:  # a cross-validation fold: its test patients, never seen in its training
        return model.cnn.float().eval(), set(state["fold"]["test_patients"]), crop
    _, val = split_by_group(load_dataset_with(cfg), val_fraction=cfg.val_fraction, seed=cfg.seed)
    return model.cnn.float().eval(), {c.group for c in val}, crop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(default_model_path()))
    ap.add_argument("--data", default="../shared/data/covid-blues")
    ap.add_argument("--work-dir", default=None, help="a training run's work dir: its stage-1 CNN, on its split")
    ap.add_argument(
        "--cv",
        default=None,
        metavar="DIR",
        help="a `lusviewer crossval` folder: every fold's CNN (--variant, first repeat) on its own test clips",
    )
    ap.add_argument("--variant", default="compact", help="with --cv: the variant")
    ap.add_argument("--checkpoint", default="cnn_last", help="with --work-dir or --cv: cnn_last or cnn_best")
    ap.add_argument("--padded", action="store_true", help="frames set in a black border a quarter of their size")
    ap.add_argument("--random-init", action="store_true", help="the architecture untrained (seed 0)")
    ap.add_argument(
        "--crop", choices=("none", "sector"), default=None, help="what the CNN sees (default: as its card or run says)"
    )
    args = ap.parse_args()
    if args.cv:
        root = Path(args.cv)
        works = sorted(root.glob(f"fold*/{args.variant}")) or sorted(root.glob(f"rep0/fold*/{args.variant}"))
        if not works:
            raise SystemExit(f"{root}: no fold*/{args.variant} or rep0/fold*/{args.variant} here")
        totals = [0, 0, 0]
        shares: list[float] = []
        for work in works:
            cnn, test, crop = stage1_cnn(work, args.checkpoint)
            n, corner, _in_border, fold_shares, _found = measure(args, cnn, test, args.crop or crop)
            totals[0] += n
            totals[1] += corner
            shares += fold_shares
        b = np.array(shares)
        print(
            f"{totals[0]} out-of-fold clips of {len(works)} fold models (middle frame): Grad-CAM peak within 10 % "
            f"of an image corner in {totals[1]}; share of the map on black background: median {np.median(b):.2f}, "
            f"above 0.5 in {int((b > 0.5).sum())}"
        )
        return
    if args.work_dir:
        cnn, val, crop = stage1_cnn(Path(args.work_dir), args.checkpoint)
    else:
        loaded = load_model(args.model)
        cnn = loaded.model.cnn.float()
        split = loaded.card.training.get("split") or {}
        val = set(split["val_patients"]) if split.get("val_patients") else None  # None: all clips
        crop = loaded.card.crop
    crop = args.crop or crop
    if args.random_init:
        import torch

        from lusviewer.model import HybridModel

        torch.manual_seed(0)
        cnn = HybridModel(cnn.cfg).cnn.float().eval()
    n, corner, in_border, background, found = measure(args, cnn, val, crop)
    what = "validation clips" if val is not None else "clips (the card names no validation patients: all)"
    bg = np.array(background)
    print(
        f"{n} {what} (middle frame): Grad-CAM peak within 10 % of an image corner in {corner}; "
        f"share of the map on black background: median {np.median(bg):.2f}, above 0.5 in {int((bg > 0.5).sum())}"
        + (f"; peak in the added black border in {in_border}" if args.padded else "")
        + (f"; cropped to the sector (found in {found})" if crop == "sector" else "")
    )


def measure(
    args: argparse.Namespace, cnn: Any, val: set[str] | None, crop: str
) -> tuple[int, int, int, list[float], int]:
    """Over the clips of patients ``val`` (None: all): clips, peaks near a corner, peaks in
    the added border, shares of the map on background, sectors found."""
    clips = [c for c in load_covid_blues(args.data) if val is None or c.group in val]
    corner, background, in_border = 0, [], 0
    found = 0
    for c in clips:
        frame, sector, m = middle_frame(c.path, crop, cnn.cfg.input_size, args.padded)
        found += int(sector is not None and sector.found)
        cam, _cls = grad_cam(cnn, frame, sector=sector)
        h, w = cam.shape
        y, x = np.unravel_index(int(cam.argmax()), cam.shape)
        corner += int(min(y, h - 1 - y) < 0.1 * h and min(x, w - 1 - x) < 0.1 * w)
        if args.padded:
            in_border += int(min(y, h - 1 - y) < m or min(x, w - 1 - x) < m)
        background.append(share_on_background(cam, frame))
    return len(clips), corner, in_border, background, found


def middle_frame(path: str, crop: str, size: int, padded: bool = False) -> tuple[np.ndarray, Sector | None, int]:
    """A clip's middle frame, the sector the model sees it through and the border ``m``:
    with ``padded``, the frame is set in a black border a quarter of its height (``m``
    px; else 0). The sector is the engine's (``crop="sector"``; None for "none"): found by
    :func:`~lusviewer.model.preprocess.model_frames` on the clip's first frames, padded alike."""
    with open_clip(path) as r:
        frame = r.frame(len(r) // 2)
        m = frame.shape[0] // 4 if padded else 0
        label = r.info.path
        sector, _ = model_frames(
            (pad(f, m) for f in r.iter_frames()), size, crop, error=lambda reason: ClipError(label, reason)
        )
    return pad(frame, m), sector, m


def pad(frame: np.ndarray, m: int) -> np.ndarray:
    """The frame set in a black border ``m`` px wide (``m`` 0: as it is)."""
    return np.pad(frame, ((m, m), (m, m), (0, 0))) if m else frame


if __name__ == "__main__":
    main()
