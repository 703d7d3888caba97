"""Pairwise judging: candidate against a baseline on every prompt, in both orders (MT-Bench).

Each pair is asked twice, candidate first and baseline first; the candidate wins a prompt only
if both orders say so, loses only if both say the baseline, and anything else (including the
two orders disagreeing: position bias) is a tie. Win rate = (wins + ties / 2) / prompts, with a
bootstrap CI; the length-controlled win rate follows AlpacaEval's length-only variant.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .parsing import ReplyError, extract_json
from .prompting import defuse, markers, nonce_for, render

TEMPLATE = "pairwise_judge.jinja"
WINNERS = {"a": "A", "b": "B", "tie": "tie", "draw": "tie", "equal": "tie", "both": "tie", "neither": "tie"}


def render_pairwise_prompt(item: dict[str, Any], answer_a: str, answer_b: str) -> str:
    nonce = nonce_for(answer_a, answer_b)
    begin_a, end_a = markers("ANSWER A", nonce)
    begin_b, end_b = markers("ANSWER B", nonce)
    return render(TEMPLATE, item=item, nonce=nonce, answer_a=defuse(answer_a), answer_b=defuse(answer_b),
                  begin_a=begin_a, end_a=end_a, begin_b=begin_b, end_b=end_b)


def parse_winner(reply: str) -> str:
    """'A', 'B' or 'tie' from a JSON reply (or a bare letter, which small judges often give)."""
    try:
        data = extract_json(reply)
        value = data.get("winner") if isinstance(data, dict) else None
    except ReplyError:
        value = reply.strip().strip(".\"'*[]() ") if len(reply.strip()) <= 12 else None
    if not isinstance(value, str) or value.strip().lower().strip("[]\"' ") not in WINNERS:
        raise ReplyError(f"winner: unreadable {str(value)[:30]!r}")
    return WINNERS[value.strip().lower().strip("[]\"' ")]


def combine(candidate_first: str | None, baseline_first: str | None) -> str:
    """Candidate's outcome from the two orders: 'win', 'loss' or 'tie' (None = unscored)."""
    if candidate_first is None or baseline_first is None:
        return "unscored"
    says_candidate = (candidate_first == "A", baseline_first == "B")
    says_baseline = (candidate_first == "B", baseline_first == "A")
    if all(says_candidate):
        return "win"
    if all(says_baseline):
        return "loss"
    return "tie"


@dataclass(frozen=True)
class WinRate:
    n: int
    wins: int
    ties: int
    losses: int
    unscored: int
    win_rate: float | None
    low: float | None
    high: float | None
    length_controlled: float | None
    mean_words_candidate: float | None
    mean_words_baseline: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bootstrap(values: np.ndarray, seed: int = 20261124) -> tuple[float, float]:
    from scipy.stats import bootstrap

    if len(values) < 3 or np.all(values == values[0]):
        return float(values.mean()), float(values.mean())
    ci = bootstrap((values,), np.mean, n_resamples=2000, method="percentile",
                   random_state=np.random.default_rng(seed)).confidence_interval
    return round(float(ci.low), 4), round(float(ci.high), 4)


def length_controlled_win_rate(outcomes: Sequence[float], len_candidate: Sequence[int], len_baseline: Sequence[int]) -> float | None:
    """AlpacaEval's length-only LC: logistic fit of the outcome on tanh(standardised length
    difference), predicted at equal length. Ties enter as half a win and half a loss."""
    from sklearn.linear_model import LogisticRegression

    diff = np.asarray(len_candidate, float) - np.asarray(len_baseline, float)
    if len(diff) < 5:
        return None
    scale = diff.std() or 1.0
    x = np.tanh(diff / scale).reshape(-1, 1)
    y = np.asarray(outcomes, float)
    rows_x = np.concatenate([x, x])
    rows_y = np.concatenate([np.ones_like(y), np.zeros_like(y)])
    weights = np.concatenate([y, 1 - y])
    if weights[rows_y == 1].sum() == 0 or weights[rows_y == 0].sum() == 0:
        return float(y.mean())  # all wins or all losses: nothing to fit
    model = LogisticRegression(C=1e6).fit(rows_x, rows_y, sample_weight=weights)
    return round(float(1 / (1 + math.exp(-model.intercept_[0]))), 4)


def win_rate(outcomes: Sequence[str], words_candidate: Sequence[int], words_baseline: Sequence[int]) -> WinRate:
    scored = [(o, c, b) for o, c, b in zip(outcomes, words_candidate, words_baseline) if o != "unscored"]
    values = np.array([{"win": 1.0, "tie": 0.5, "loss": 0.0}[o] for o, _, _ in scored])
    count = {k: sum(1 for o in outcomes if o == k) for k in ("win", "tie", "loss", "unscored")}
    if len(values) == 0:
        return WinRate(len(outcomes), 0, 0, 0, count["unscored"], None, None, None, None, None, None)
    low, high = _bootstrap(values)
    lc = length_controlled_win_rate(values, [c for _, c, _ in scored], [b for _, _, b in scored])
    return WinRate(
        n=len(outcomes), wins=count["win"], ties=count["tie"], losses=count["loss"], unscored=count["unscored"],
        win_rate=round(float(values.mean()), 4), low=low, high=high, length_controlled=lc,
        mean_words_candidate=round(float(np.mean([c for _, c, _ in scored])), 1),
        mean_words_baseline=round(float(np.mean([b for _, _, b in scored])), 1),
    )
