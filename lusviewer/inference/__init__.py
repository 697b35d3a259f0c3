"""The scoring engine (no Qt): batches, device, precision, progress, cancel."""

from lusviewer.inference.engine import (
    Cancelled,
    ClipResult,
    ScoredFrames,
    ScoringEngine,
    resolve_device,
)
from lusviewer.inference.sequence import SequenceStreamer, sequence_logits

__all__ = [
    "Cancelled",
    "ClipResult",
    "ScoredFrames",
    "ScoringEngine",
    "SequenceStreamer",
    "resolve_device",
    "sequence_logits",
]
