"""``lusviewer --self-test``: the shipped model (hash verified) scores the bundled sample."""

from __future__ import annotations

from lusviewer.cli.common import say_model_warnings
from lusviewer.wording import count


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
        say_model_warnings(loaded)
        engine = ScoringEngine(loaded)
        sample = sample_clip_path()
        with open_clip(sample) as clip:
            n = clip.info.frame_count
            result = engine.score_clip(clip)
        problems = []
        if len(result.scores) != n:
            problems.append(f"{count(len(result.scores), 'frame')} scored of {n}")
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
        f"scored {count(n, 'frame')} of {sample.name} on {engine.description} in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return 0
