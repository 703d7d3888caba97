"""From judgments to comparisons: per-prompt scores, paired differences against a baseline
(with the smallest difference the prompt set can detect), and scores by category.

Stored in results.json, so the report and the gate read the same numbers.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from judges.types import DIMENSIONS

from .records import PromptSet
from .stats import minimum_detectable_effect, paired_difference

METRICS = (*DIMENSIONS, "overall")


def per_prompt_scores(judgments: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """scores[contestant][prompt_id][metric]: mean over judges and samples of scored verdicts."""
    sums: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for j in judgments:
        if j.get("scores"):
            sums[(j["contestant"], j["prompt_id"])].append(j["scores"])
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (contestant, prompt_id), scores in sums.items():
        means = {d: sum(s[d] for s in scores) / len(scores) for d in DIMENSIONS}
        means["overall"] = sum(means.values()) / len(DIMENSIONS)
        out[contestant][prompt_id] = means
    return dict(out)


def paired_comparisons(scores: dict[str, dict[str, dict[str, float]]], baseline: str) -> dict[str, dict[str, Any]]:
    """For every other contestant: mean of (contestant - baseline) per metric, 95% CI, and MDE."""
    if baseline not in scores:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, mine in scores.items():
        if name == baseline:
            continue
        shared = sorted(set(mine) & set(scores[baseline]))
        metrics = {}
        for metric in METRICS:
            candidate = [mine[p][metric] for p in shared]
            base = [scores[baseline][p][metric] for p in shared]
            estimate = paired_difference(candidate, base)
            metrics[metric] = {**estimate.to_dict(),
                               "mde": minimum_detectable_effect([c - b for c, b in zip(candidate, base)])}
        out[name] = {"baseline": baseline, "prompts": len(shared), "metrics": metrics}
    return out


def by_category(scores: dict[str, dict[str, dict[str, float]]], prompt_set: PromptSet) -> dict[str, dict[str, float | None]]:
    """table[category][contestant] = mean overall score over that category's prompts."""
    category = {item.id: item.category for item in prompt_set.items}
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, prompts in scores.items():
        for prompt_id, metrics in prompts.items():
            table[category.get(prompt_id, "uncategorised")][name].append(metrics["overall"])
    return {cat: {n: round(sum(v) / len(v), 4) if v else None for n, v in row.items()} for cat, row in sorted(table.items())}
