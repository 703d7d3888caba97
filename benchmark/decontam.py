"""Decontamination: does any training or MCQ item leak a benchmark prompt or reference?

Two tests, as the field runs them:
- 13-gram overlap (GPT-3 / lm-eval's method): any 13 consecutive normalised words
  shared between an item and a benchmark question or reference;
- near-duplicates: cosine similarity of MiniLM embeddings, question against
  question and answer against reference, at or above `cosine_threshold`.
A benchmark item hit by either test is contaminated.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .fileio import iter_jsonl
from .prompts import parse_seed_prompt
from .records import PromptSet

TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class TextItem:
    """One training or MCQ item, reduced to what could leak: a question and an answer text."""

    file: str
    line: int
    question: str
    answer: str


@dataclass(frozen=True)
class Hit:
    benchmark_id: str
    file: str
    line: int
    method: str  # "13-gram" or "cosine-question" or "cosine-answer"
    evidence: str  # the shared n-gram, or the similarity


@dataclass
class DecontamReport:
    n: int
    cosine_threshold: float
    benchmark_items: int
    items_checked: dict[str, int] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)

    @property
    def contaminated_ids(self) -> list[str]:
        return sorted({hit.benchmark_id for hit in self.hits})

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "cosine_threshold": self.cosine_threshold,
            "benchmark_items": self.benchmark_items,
            "items_checked": self.items_checked,
            "contaminated_benchmark_ids": self.contaminated_ids,
            "hits": [asdict(h) for h in self.hits],
        }


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = TOKEN.findall(text.lower())
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def load_text_items(path: str | Path) -> list[TextItem]:
    """Training rows (seed format) or MCQ rows, as question/answer texts."""
    items = []
    for line, row in iter_jsonl(path):
        if "prompt" in row:
            question = parse_seed_prompt(str(row.get("prompt", ""))) or str(row.get("prompt", ""))
            answer = str(row.get("response", ""))
        else:
            question = str(row.get("question", ""))
            answer = " ".join([*map(str, row.get("choices", [])), str(row.get("explanation", ""))])
        items.append(TextItem(str(path), line, question, answer))
    return items


def find_contamination(
    benchmark: PromptSet,
    items_by_file: dict[str, list[TextItem]],
    n: int = 13,
    cosine_threshold: float = 0.9,
    use_embeddings: bool = True,
) -> DecontamReport:
    report = DecontamReport(n, cosine_threshold, len(benchmark.items))
    index: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for bench in benchmark.items:
        for gram in ngrams(bench.question + " \n " + bench.reference, n):
            index[gram].add(bench.id)
    all_items = [item for items in items_by_file.values() for item in items]
    for name, items in items_by_file.items():
        report.items_checked[name] = len(items)
    for item in all_items:
        reported: set[str] = set()
        for gram in ngrams(item.question + " \n " + item.answer, n):
            for bench_id in index.get(gram, ()):
                if bench_id not in reported:
                    reported.add(bench_id)
                    report.hits.append(Hit(bench_id, item.file, item.line, f"{n}-gram", " ".join(gram)))
    if use_embeddings and all_items:
        from judges.embeddings import embed

        bench_q = embed([b.question for b in benchmark.items])
        bench_r = embed([b.reference for b in benchmark.items])
        item_q = embed([i.question for i in all_items])
        item_a = embed([i.answer for i in all_items])
        for method, sims in (("cosine-question", item_q @ bench_q.T), ("cosine-answer", item_a @ bench_r.T)):
            for row, col in zip(*(sims >= cosine_threshold).nonzero()):
                item = all_items[int(row)]
                bench_id = benchmark.items[int(col)].id
                report.hits.append(Hit(bench_id, item.file, item.line, method, f"{float(sims[row, col]):.3f}"))
    return report


def report_table(report: DecontamReport) -> str:
    per_file: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for hit in report.hits:
        per_file[hit.file][hit.method.split("-")[0] if hit.method.startswith("cosine") else "ngram"] += 1
    lines = [f"{'file':<44} {'items':>6} {str(report.n) + '-gram hits':>13} {'cosine hits':>12}"]
    for name, count in report.items_checked.items():
        lines.append(f"{name:<44} {count:>6} {per_file[name]['ngram']:>13} {per_file[name]['cosine']:>12}")
    lines.append(
        f"benchmark items: {report.benchmark_items}, contaminated: {len(report.contaminated_ids)}"
        f" (n={report.n}, cosine >= {report.cosine_threshold})"
    )
    for hit in report.hits[:20]:
        lines.append(f"  {hit.benchmark_id} <- {hit.file}:{hit.line} [{hit.method}] {hit.evidence}")
    if len(report.hits) > 20:
        lines.append(f"  ... {len(report.hits) - 20} more hits in the JSON report")
    return "\n".join(lines)
