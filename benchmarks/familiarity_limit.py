"""How unlike its training clips may a clip be before the model's scores mean nothing?

    python benchmarks/familiarity_limit.py [--model models/lusviewer-hybrid.json]
        [--data ../shared/data/covid-blues] [--other ../shared/data/pocus-unscored/videos]
        [--quantile 0.99] [--write-card]

The autoencoder branch reconstructs every frame; its error is small on images like the
ones it trained on and grows on others (another device, preset, depth or organ). This
scores, with the shipped engine:

- the model's *training* clips (the patients its card lists as training patients): the
  limit is the ``--quantile`` of their per-clip mean reconstruction error;
- its *validation* patients' clips (same device, unseen patients): the share flagged
  there is the false-alarm rate;
- optionally a folder of clips from other devices (``--other``): the share flagged there.

With ``--write-card`` the limit goes into the card's ``inference`` section
(``recon_error_limit``, ``recon_error_check``), where the engine reads it: a clip above
it is reported as ``unfamiliar`` (CSV column, a warning line in the CLI, a banner in the
viewer). The weights, and so the card's sha256, are unchanged.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lusviewer.inference import ScoringEngine  # noqa: E402
from lusviewer.io import ClipError, find_clips  # noqa: E402
from lusviewer.model import load_model  # noqa: E402
from lusviewer.model.weights import record_in_card  # noqa: E402
from lusviewer.resources import default_model_path  # noqa: E402
from lusviewer.training.data import load_dataset  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def mean_errors(engine: ScoringEngine, paths: list[str], label: str) -> np.ndarray:
    out = []
    t0 = time.time()
    for i, p in enumerate(paths, 1):
        try:
            out.append(engine.score_clip(p).recon_error_mean)
        except ClipError as exc:
            print(f"  skipped {exc}")
        if i % 20 == 0 or i == len(paths):
            print(f"  {label}: {i}/{len(paths)} clips ({time.time() - t0:.0f} s)", flush=True)
    return np.asarray(out, dtype=np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_path()))
    ap.add_argument("--data", default=str(SHARED / "covid-blues"), help="the labelled data the model trained on")
    ap.add_argument("--other", default=str(SHARED / "pocus-unscored" / "videos"), help="clips of other devices")
    ap.add_argument("--quantile", type=float, default=0.99)
    ap.add_argument("--write-card", action="store_true")
    args = ap.parse_args()

    loaded = load_model(args.model)
    split = loaded.card.training.get("split", {})
    train_p, val_p = set(split.get("train_patients", [])), set(split.get("val_patients", []))
    if not train_p:
        raise SystemExit("the model card lists no training patients")
    clips = load_dataset(args.data)
    train = [c.path for c in clips if c.group in train_p]
    val = [c.path for c in clips if c.group in val_p]
    other = find_clips(args.other) if Path(args.other).exists() else []
    engine = ScoringEngine(loaded, device="cpu")
    print(f"{loaded.card.display_name} on {engine.description}: {len(train)} training, {len(val)} validation, "
          f"{len(other)} other-device clips")  # fmt: skip

    e_train = mean_errors(engine, train, "training")
    limit = float(np.quantile(e_train, args.quantile))
    e_val = mean_errors(engine, val, "validation") if val else np.array([])
    e_other = mean_errors(engine, other, "other devices") if other else np.array([])

    def share(e: np.ndarray) -> str:
        return f"{int((e > limit).sum())}/{len(e)}" if len(e) else "none"

    print(f"\nper-clip mean reconstruction error (median, max): training {np.median(e_train):.4f}, {e_train.max():.4f}")
    if len(e_val):
        print(f"  validation {np.median(e_val):.4f}, {e_val.max():.4f}")
    if len(e_other):
        print(f"  other devices {np.median(e_other):.4f}, {e_other.max():.4f}")
    print(f"limit = {args.quantile:g} quantile of the training clips = {limit:.4f}")
    print(
        f"flagged: training {share(e_train)}, validation {share(e_val)} (false alarms), other devices {share(e_other)}"
    )
    if len(e_val) and len(e_other):
        auc = float(np.mean([(o > v) + 0.5 * (o == v) for o in e_other for v in e_val]))
        print(f"AUC, other devices vs validation clips: {auc:.3f}")

    if args.write_card:
        check = (
            f"the {args.quantile:g} quantile of the per-clip mean reconstruction error of the model's "
            f"{len(e_train)} training clips; above it, clips are flagged as unlike the training clips. Flagged: "
            f"validation patients (same device) {share(e_val)}, other-device clips "
            f"({'/'.join(Path(args.other).parts[-2:])}) {share(e_other)} (benchmarks/familiarity_limit.py)"
        )
        card_path = loaded.card_path
        record_in_card(card_path, "inference", {"recon_error_limit": round(limit, 6), "recon_error_check": check})
        print(f"wrote the limit into {card_path}")


if __name__ == "__main__":
    main()
