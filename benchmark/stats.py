"""Statistics for results: means with bootstrap CIs, paired differences, detectable effects.

scipy.stats.bootstrap does the resampling (BCa by default; percentile when the sample is
too small or degenerate for BCa). Seeds are fixed so a report renders the same twice.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 20261124


@dataclass(frozen=True)
class Estimate:
    mean: float | None
    low: float | None
    high: float | None
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def bootstrap_mean(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    from scipy.stats import bootstrap

    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(data) == 0:
        return Estimate(None, None, None, 0)
    mean = float(data.mean())
    if len(data) < 3 or np.all(data == data[0]):
        return Estimate(mean, mean, mean, len(data))
    result = bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES,
                       method="percentile", random_state=np.random.default_rng(SEED))
    return Estimate(round(mean, 4), round(float(result.confidence_interval.low), 4),
                    round(float(result.confidence_interval.high), 4), len(data))


def paired_difference(candidate: Sequence[float], baseline: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean of (candidate - baseline) over the same prompts, with a bootstrap CI of the paired differences."""
    pairs = [(c, b) for c, b in zip(candidate, baseline) if c is not None and b is not None]
    return bootstrap_mean([c - b for c, b in pairs], confidence)


def minimum_detectable_effect(differences: Sequence[float], alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Smallest true mean difference this many paired prompts detect with the given power (normal approximation)."""
    from scipy.stats import norm

    data = np.asarray([d for d in differences if d is not None], dtype=float)
    if len(data) < 3:
        return None
    sd = float(data.std(ddof=1))
    return round((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * sd / math.sqrt(len(data)), 4)
