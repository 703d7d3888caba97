"""Statistics: bootstrap CIs cover a known mean at about the nominal rate; paired CIs are
narrower than unpaired ones on correlated data; the MDE shrinks with more prompts."""
import numpy as np

from benchmark.stats import bootstrap_mean, minimum_detectable_effect, paired_difference


def test_bootstrap_ci_covers_the_true_mean_at_about_95_percent():
    rng = np.random.default_rng(7)
    covered = 0
    trials = 300
    for _ in range(trials):
        sample = rng.normal(loc=3.0, scale=0.8, size=60)
        est = bootstrap_mean(sample.tolist())
        covered += est.low <= 3.0 <= est.high
    assert 0.90 <= covered / trials <= 0.99


def test_paired_ci_is_narrower_than_unpaired_on_correlated_data():
    rng = np.random.default_rng(11)
    difficulty = rng.normal(3.0, 1.0, size=80)  # prompts vary a lot; both models feel it
    baseline = difficulty + rng.normal(0, 0.2, size=80)
    candidate = difficulty + 0.15 + rng.normal(0, 0.2, size=80)
    paired = paired_difference(candidate.tolist(), baseline.tolist())
    a, b = bootstrap_mean(candidate.tolist()), bootstrap_mean(baseline.tolist())
    unpaired_width = (a.high - a.low) + (b.high - b.low)  # a conservative unpaired comparison
    assert paired.high - paired.low < 0.3 * unpaired_width
    assert paired.low > 0  # the paired test sees the 0.15 improvement ...
    assert a.low < b.high  # ... which the unpaired intervals cannot separate


def test_minimum_detectable_effect_shrinks_with_more_prompts():
    rng = np.random.default_rng(3)
    small = minimum_detectable_effect(rng.normal(0, 1, 25).tolist())
    large = minimum_detectable_effect(rng.normal(0, 1, 400).tolist())
    assert small > 2 * large > 0
