"""Summaries of repeated measurements: median, min and max over the samples."""

from __future__ import annotations

import statistics


def summary(samples: list[float], digits: int = 3) -> dict[str, object]:
    """{"n", "median", "min", "max", "samples"} of the samples (all None when there are none)."""
    if not samples:
        return {"n": 0, "median": None, "min": None, "max": None, "samples": []}
    return {
        "n": len(samples),
        "median": round(statistics.median(samples), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
        "samples": [round(s, digits) for s in samples],
    }


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, digits)


def rotated(items: list, k: int) -> list:
    """The items starting at position k (mod len): each round of an interleaved run starts with
    a different runtime, so no runtime always runs right after the same neighbour."""
    if not items:
        return []
    k %= len(items)
    return items[k:] + items[:k]
