"""Proving a judge works: agreement with labelled answers, and a sensitivity suite.

Agreement: per dimension, Spearman's rho, quadratic-weighted kappa (on scores rounded to
1-5) and mean absolute error against data/judge_calibration.jsonl.

Sensitivity: for each prompt, a good answer and five damaged versions of it. A working judge
scores the good answer above each damaged one on the dimension the damage targets. Run on
two kinds of good answer: the reference itself (a reference-comparing judge has it easy
there) and independently written good answers (the honest test).
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .types import DIMENSIONS, Verdict

PERTURBATIONS = {  # kind -> the dimension it damages
    "key_facts_removed": "accuracy",
    "red_flag_inserted": "accuracy",
    "rude_rewrite": "tone",
    "off_topic": "accuracy",
    "truncated": "accuracy",
}
SENTENCE = re.compile(r"(?<=[.!?])\s+")
CARING = re.compile(r"\b(understand\w*|worr\w*|concern\w*|sorry|reassur\w*|sensible|good question|natural)\b", re.I)
SAFETY = re.compile(r"\b(contact|call|seek|urgent\w*|emergency|promptly|straight away|as soon as|same day|book)\b", re.I)
# Written apart from the reference judge's lexicon, so the suite does not just replay its word list.
RUDE_OPENERS = [
    "Honestly, this gets asked constantly and the answer is basic.",
    "Look, people really ought to read up before asking things like this.",
    "Fine, I will spell it out once more, since nobody reads the leaflets.",
]
RUDE_CLOSERS = [
    "That is all there is to it; do not expect hand-holding.",
    "Any competent adult could have worked that out.",
    "Try not to waste appointment time with this again.",
]


@dataclass(frozen=True)
class Perturbed:
    prompt_id: str
    good_kind: str  # "reference" or "independent"
    kind: str  # a PERTURBATIONS key, or "good"
    answer: str


def split_sentences(text: str) -> list[str]:
    return [s for s in SENTENCE.split(text.strip()) if s]


def remove_key_facts(answer: str, key_points: Sequence[str], embed: Callable[[Sequence[str]], Any]) -> str:
    """Drop, for each key point, the sentence that states it best; keep the rest in order."""
    parts = split_sentences(answer)
    if len(parts) < 3 or not key_points:
        return parts[0] if parts else answer
    sims = embed(list(key_points)) @ embed(parts).T
    drop = {int(row.argmax()) for row in sims}
    kept = [p for i, p in enumerate(parts) if i not in drop]
    return " ".join(kept or parts[:1])


def insert_red_flag(answer: str, red_flag: str) -> str:
    parts = split_sentences(answer)
    middle = len(parts) // 2
    flag = red_flag.rstrip(".") + "."
    return " ".join(parts[:middle] + [flag] + parts[middle:])


def rude_rewrite(answer: str, seed: int) -> str:
    """Same facts, no care: drop acknowledging and safety-netting sentences, add contempt."""
    rng = random.Random(seed)
    parts = [p for p in split_sentences(answer) if not CARING.search(p) and not SAFETY.search(p)]
    parts = [re.sub(r"\byou\b", "patients", p, flags=re.I) for p in parts] or split_sentences(answer)[:2]
    return " ".join([rng.choice(RUDE_OPENERS), *parts, rng.choice(RUDE_CLOSERS)])


def truncate(answer: str) -> str:
    words = answer.split()
    return " ".join(words[: max(8, len(words) // 4)])


def build_suite(items: Sequence[dict[str, Any]], good_answers: dict[str, list[tuple[str, str]]],
                embed: Callable[[Sequence[str]], Any]) -> list[Perturbed]:
    """good_answers: prompt id -> [(good_kind, answer)]. Off-topic answers come from another category."""
    by_id = {item["id"]: item for item in items}
    ids = [item["id"] for item in items]
    suite = []
    for index, prompt_id in enumerate(ids):
        item = by_id[prompt_id]
        other = next((by_id[ids[(index + step) % len(ids)]] for step in range(7, len(ids) + 7)
                      if by_id[ids[(index + step) % len(ids)]].get("category") != item.get("category")), None)
        for good_kind, good in good_answers.get(prompt_id, []):
            suite.append(Perturbed(prompt_id, good_kind, "good", good))
            suite.append(Perturbed(prompt_id, good_kind, "key_facts_removed", remove_key_facts(good, item.get("key_points", ()), embed)))
            if item.get("red_flags"):
                suite.append(Perturbed(prompt_id, good_kind, "red_flag_inserted", insert_red_flag(good, item["red_flags"][0])))
            suite.append(Perturbed(prompt_id, good_kind, "rude_rewrite", rude_rewrite(good, index)))
            if other is not None:
                suite.append(Perturbed(prompt_id, good_kind, "off_topic", other["reference"]))
            suite.append(Perturbed(prompt_id, good_kind, "truncated", truncate(good)))
    return suite


def sensitivity(suite: Sequence[Perturbed], verdicts: Sequence[Verdict]) -> dict[str, dict[str, Any]]:
    """Pass rate per good-answer kind and perturbation: good strictly above damaged on the damaged dimension.

    A pair where either answer is unscored counts as a failure (the judge did not tell them apart).
    """
    good: dict[tuple[str, str], Verdict] = {}
    for row, verdict in zip(suite, verdicts):
        if row.kind == "good":
            good[(row.prompt_id, row.good_kind)] = verdict
    tallies: dict[str, dict[str, list[int]]] = {}
    for row, verdict in zip(suite, verdicts):
        if row.kind == "good":
            continue
        dim = PERTURBATIONS[row.kind]
        base = good[(row.prompt_id, row.good_kind)]
        passed = bool(base.scored and verdict.scored and base.scores[dim] > verdict.scores[dim])  # type: ignore[index]
        tallies.setdefault(row.good_kind, {}).setdefault(row.kind, []).append(int(passed))
    return {
        good_kind: {kind: {"dimension": PERTURBATIONS[kind], "pairs": len(v), "pass_rate": round(sum(v) / len(v), 4)}
                    for kind, v in kinds.items()}
        for good_kind, kinds in tallies.items()
    }


def agreement(labels: Sequence[dict[str, int]], verdicts: Sequence[Verdict]) -> dict[str, dict[str, Any]]:
    """Spearman, quadratic-weighted kappa and MAE per dimension, over the rows the judge scored."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    out: dict[str, dict[str, Any]] = {}
    for dim in DIMENSIONS:
        pairs = [(lab[dim], v.scores[dim]) for lab, v in zip(labels, verdicts) if v.scored]  # type: ignore[index]
        if len(pairs) < 3:
            out[dim] = {"n": len(pairs), "spearman": None, "qwk": None, "mae": None}
            continue
        human = [h for h, _ in pairs]
        judge = [j for _, j in pairs]
        rho = spearmanr(human, judge).statistic
        qwk = cohen_kappa_score(human, [int(min(5, max(1, round(j)))) for j in judge], weights="quadratic", labels=[1, 2, 3, 4, 5])
        out[dim] = {
            "n": len(pairs),
            "spearman": None if rho != rho else round(float(rho), 4),  # NaN when a side is constant
            "qwk": round(float(qwk), 4),
            "mae": round(sum(abs(h - j) for h, j in pairs) / len(pairs), 4),
        }
    out["unscored"] = {"n": sum(1 for v in verdicts if not v.scored)}
    return out
