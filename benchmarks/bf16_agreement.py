"""Do bf16 (the engine's CPU default path) and fp32 give the same frame labels on real clips?

    python benchmarks/bf16_agreement.py [--model models/lusviewer-hybrid.json]
        [--clips 16] [--runtime auto|torch|openvino] [--write-card]

Scores real COVID-BLUeS clips of the model's validation patients (from its card)
with the engine in fp32 (PyTorch, the reference) and in bf16 on the runtime asked
for (``auto``: the engine's default, OpenVINO where installed), and prints the share of frames whose label
(argmax) agrees, and the largest probability difference. With ``--write-card`` the
result goes into the card's ``inference`` section, where the engine reads it: on
CPU, bf16 is used by default only when this agreement is >= 0.99. The weights,
and so the card's sha256, are unchanged.
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
from lusviewer.inference.engine import BF16_AGREEMENT_FLOOR  # noqa: E402
from lusviewer.model import load_model  # noqa: E402
from lusviewer.model.weights import record_in_card  # noqa: E402
from lusviewer.resources import default_model_path  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "covid-blues" / "videos"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_path()))
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--runtime", default="auto", help="the bf16 path's runtime (the fp32 reference is PyTorch)")
    ap.add_argument("--write-card", action="store_true")
    args = ap.parse_args()
    loaded = load_model(args.model)
    split = loaded.card.training.get("split", {})
    val = set(split.get("val_patients", []))
    vids = sorted(p for p in DATA.glob("*.mp4") if not val or p.name.split("_")[1] in val)
    if not vids:
        raise SystemExit(f"no clips found under {DATA}")
    step = max(1, len(vids) // args.clips)
    clips = vids[::step][: args.clips]
    fp32 = ScoringEngine(loaded, device="cpu", precision="fp32", runtime="torch")
    bf16 = ScoringEngine(loaded, device="cpu", precision="bf16", runtime=args.runtime)
    print(f"bf16 path: {bf16.description}")
    same = total = 0
    clip_same = 0
    max_diff = 0.0
    t0 = time.time()
    for c in clips:
        a, b = fp32.score_clip(str(c)), bf16.score_clip(str(c))
        same += int((a.scores == b.scores).sum())
        total += len(a.scores)
        clip_same += int(a.summary.clip_score == b.summary.clip_score)
        max_diff = max(max_diff, float(np.abs(a.probs - b.probs).max()))
    agreement = same / total
    print(
        f"{len(clips)} clips, {total} frames: bf16 vs fp32 frame-label agreement {agreement:.4f}, "
        f"clip-score agreement {clip_same}/{len(clips)}, max |dp| {max_diff:.4f} ({time.time() - t0:.0f} s)"
    )
    print("bf16 OK as CPU default" if agreement >= BF16_AGREEMENT_FLOOR else "bf16 NOT OK: CPU default stays fp32")
    if args.write_card:
        card_path = loaded.card_path
        check = (
            f"{total} frames of {len(clips)} validation clips ({bf16.description} vs PyTorch fp32); "
            f"clip scores agreed on {clip_same}/{len(clips)}; "
            f"max probability difference {max_diff:.4f} (benchmarks/bf16_agreement.py)"
        )
        record_in_card(card_path, "inference", {"bf16_label_agreement": round(agreement, 4), "bf16_check": check})
        print(f"wrote the result into {card_path}")


if __name__ == "__main__":
    main()
