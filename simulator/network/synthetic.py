"""Generated capacity traces: constant, the paper's straggler tail, two-state Markov.

Generators return pools of unit traces plus per-client scale factors, so 100,000 clients share
a few dozen trace arrays (each client also gets its own random start offset in link.py).
"""

from __future__ import annotations

import numpy as np

from simulator.network.traces import Trace
from simulator.scenario import MarkovLink, StragglerTailLink

MBPS = 1e6


def constant(bps: float, period_s: float = 3600.0) -> Trace:
    """A link that always delivers bps."""
    return Trace.from_rates(
        np.array([0.0]), np.array([bps]), period_s=period_s, name=f"constant {bps / MBPS:g} Mbps"
    )


def lognormal_jitter(
    gen: np.random.Generator, sigma: float, step_s: float, duration_s: float
) -> Trace:
    """Unit-mean multiplicative jitter, piecewise constant over step_s (exp(σz - σ²/2))."""
    steps = max(1, int(np.ceil(duration_s / step_s)))
    factors = np.exp(sigma * gen.standard_normal(steps) - sigma**2 / 2)
    times = np.arange(steps) * step_s
    return Trace.from_rates(
        times, factors, period_s=steps * step_s, name=f"lognormal jitter σ={sigma:g}"
    )


def straggler_tail(
    spec: StragglerTailLink, n_clients: int, gen: np.random.Generator
) -> tuple[list[Trace], np.ndarray]:
    """Per-client mean rates (a straggler fraction in a slow band, the rest log-uniform) × jitter.

    fed-fstq-paper.md §6 item 7: 20% stragglers at U(0.5, 2) Mbps, the rest log-uniform in
    [5, 20] Mbps, multiplicative log-normal jitter σ = 0.3. Which clients straggle is exact:
    round(fraction × clients) of them, chosen by a seeded permutation.
    """
    n_slow = round(spec.straggler_fraction * n_clients)
    slow = np.zeros(n_clients, dtype=bool)
    slow[gen.permutation(n_clients)[:n_slow]] = True
    lo, hi = np.log(spec.normal_mbps)
    means = np.where(
        slow,
        gen.uniform(*spec.straggler_mbps, n_clients),
        np.exp(gen.uniform(lo, hi, n_clients)),
    )
    pool = [
        lognormal_jitter(gen, spec.jitter_sigma, spec.jitter_step_s, 3600.0)
        for _ in range(spec.pool)
    ]
    return pool, means * MBPS


def markov(spec: MarkovLink, gen: np.random.Generator) -> list[Trace]:
    """A pool of good/bad traces with exponential dwell times, starting in a random state."""
    pool = []
    for _ in range(spec.pool):
        times, rates, t = [], [], 0.0
        good = bool(gen.random() < spec.mean_good_s / (spec.mean_good_s + spec.mean_bad_s))
        while t < spec.duration_s:
            times.append(t)
            rates.append((spec.good_mbps if good else spec.bad_mbps) * MBPS)
            t += gen.exponential(spec.mean_good_s if good else spec.mean_bad_s)
            good = not good
        if max(rates) == 0.0:  # a pool member that never left the bad state at 0 Mbps
            rates[0] = spec.good_mbps * MBPS
        pool.append(
            Trace.from_rates(np.array(times), np.array(rates), period_s=t, name="markov good/bad")
        )
    return pool
