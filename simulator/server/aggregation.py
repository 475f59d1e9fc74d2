"""FedAvg over decoded client updates (the paper's Eq. server_agg, server step 1)."""

from __future__ import annotations

import numpy as np


def fedavg(updates: list[tuple[float, np.ndarray]]) -> np.ndarray | None:
    """Sample-weighted mean of the updates, weights normalised over those received.

    Accumulated in float64 in the given order, so the result does not depend on how many
    workers produced the updates. None when nothing arrived (the global state stays).
    """
    if not updates:
        return None
    total = float(sum(weight for weight, _ in updates))
    acc = np.zeros(updates[0][1].shape, dtype=np.float64)
    for weight, delta in updates:
        acc += (weight / total) * delta.astype(np.float64)
    return acc.astype(np.float32)
