"""Counts in words for every line a person reads: ``1 clip``, ``2 clips``, never ``1 clips``
or ``clip(s)``. One helper, so that the CLI, the logs and the reports count alike."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` in agreement: ``count(1, "clip")`` is ``1 clip``, ``count(2, "clip")``
    ``2 clips``, ``count(0, "clip")`` ``0 clips``; ``plural`` for a noun that does not just
    take an ``s`` (``count(2, "batch", "batches")``)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
