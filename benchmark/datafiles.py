"""Schemas of the shipped content files, checked row by row: `dentbench data validate`.

The prompt-set loader accepts any well-formed set (users bring their own); the
curated files are held to stricter rules here, which CI enforces. Every problem
is reported (not just the first) as file:line: field: message.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DentbenchError
from .fileio import iter_jsonl
from .prompts import _item_from_native, load_prompt_set, parse_seed_prompt
from .records import PromptItem

CATEGORIES = (
    "patient_selection", "diagnosis_planning", "surgical_procedures", "bone_sinus_augmentation", "soft_tissue",
    "osseointegration_materials", "prosthetics", "complications", "maintenance_aftercare", "patient_communication",
)
DIFFICULTIES = ("easy", "medium", "hard")
VOICES = ("patient", "clinician")
CALIBRATION_QUALITIES = (
    "excellent", "partly_wrong", "dangerous", "rude", "jargon_heavy", "vague", "off_topic", "truncated",
)
DIMENSIONS = ("tone", "accuracy", "terminology")

BENCHMARK_FILE = Path("prompts/dental_implant_v1.jsonl")
SHIPPED = {
    "prompts": BENCHMARK_FILE,
    "stage1": Path("data/stage1_med_dialog.jsonl"),
    "stage2": Path("data/stage2_implantation_data.jsonl"),
    "mcq": Path("data/dental_mcq.jsonl"),
    "calibration": Path("data/judge_calibration.jsonl"),
}


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        if not self.path:  # the message already names its file and line
            return self.message
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


def words(text: str) -> int:
    return len(text.split())


def _strings(row: dict[str, Any], name: str, low: int, high: int) -> list[str]:
    value = row.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        return [f"{name}: must be a list of non-empty strings"]
    if not low <= len(value) <= high:
        return [f"{name}: has {len(value)} entries, expected {low} to {high}"]
    return []


def check_prompt_item(item: PromptItem) -> list[str]:
    """The curated set's rules (prompts/README.md), on top of the loader's schema."""
    problems = []
    if item.category not in CATEGORIES:
        problems.append(f"category: {item.category!r} is not one of the {len(CATEGORIES)} categories")
    if item.difficulty not in DIFFICULTIES:
        problems.append(f"difficulty: {item.difficulty!r} must be one of {', '.join(DIFFICULTIES)}")
    if item.voice not in VOICES:
        problems.append(f"voice: {item.voice!r} must be one of {', '.join(VOICES)}")
    if not 80 <= words(item.reference) <= 250:
        problems.append(f"reference: {words(item.reference)} words, expected 80 to 250")
    for name, low, high in (("key_points", 3, 6), ("required_terms", 2, 6), ("red_flags", 1, 3), ("sources", 1, 3)):
        count = len(getattr(item, name))
        if not low <= count <= high:
            problems.append(f"{name}: has {count} entries, expected {low} to {high}")
    reference = item.reference.lower()
    for term in item.required_terms:
        if not any(form.lower() in reference for form in term.forms()):
            problems.append(f"required_terms: neither {term.term!r} nor a synonym appears in the reference")
    return problems


def _check_prompt_row(row: dict[str, Any], path: Path, line: int) -> list[str]:
    try:
        return check_prompt_item(_item_from_native(path, line, row))
    except DentbenchError as exc:
        return [str(exc).split(f"{path}:{line}: ", 1)[-1]]


def _check_training_row(label_field: str, low: int, high: int) -> Callable[[dict[str, Any], Path, int], list[str]]:
    def check(row: dict[str, Any], path: Path, line: int) -> list[str]:
        problems = []
        unknown = sorted(set(row) - {"prompt", "response", label_field, "sources"})
        if unknown:
            problems.append(f"{unknown[0]}: unknown field")
        prompt, response = row.get("prompt"), row.get("response")
        if not isinstance(prompt, str) or parse_seed_prompt(prompt) is None:
            problems.append("prompt: must be '### Instruction:\\n<question>\\n\\n### Response:'")
        if not isinstance(response, str) or not response.strip():
            problems.append("response: must be a non-empty string")
        elif not low <= words(response) <= high:
            problems.append(f"response: {words(response)} words, expected {low} to {high}")
        if not isinstance(row.get(label_field), str) or not row[label_field].strip():
            problems.append(f"{label_field}: must be a non-empty string")
        return problems + _strings(row, "sources", 1, 3)

    return check


def _check_mcq_row(row: dict[str, Any], path: Path, line: int) -> list[str]:
    problems = []
    unknown = sorted(set(row) - {"id", "question", "choices", "answer", "explanation", "category", "sources"})
    if unknown:
        problems.append(f"{unknown[0]}: unknown field")
    for name in ("id", "question", "explanation", "category"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            problems.append(f"{name}: must be a non-empty string")
    choices = row.get("choices")
    if not isinstance(choices, list) or len(choices) != 4 or not all(isinstance(c, str) and c.strip() for c in choices):
        problems.append("choices: must be a list of 4 non-empty strings")
    elif len({c.strip().lower() for c in choices}) != 4:
        problems.append("choices: must be 4 distinct options")
    answer = row.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer <= 3:
        problems.append("answer: must be an integer index 0 to 3")
    if isinstance(row.get("category"), str) and row["category"] not in CATEGORIES:
        problems.append(f"category: {row['category']!r} is not one of the {len(CATEGORIES)} categories")
    return problems + _strings(row, "sources", 1, 3)


def _check_calibration_row(known_ids: set[str]) -> Callable[[dict[str, Any], Path, int], list[str]]:
    def check(row: dict[str, Any], path: Path, line: int) -> list[str]:
        problems = []
        unknown = sorted(set(row) - {"id", "prompt_id", "quality", "answer", "labels", "rationale"})
        if unknown:
            problems.append(f"{unknown[0]}: unknown field")
        for name in ("id", "prompt_id", "answer", "rationale"):
            if not isinstance(row.get(name), str) or not row[name].strip():
                problems.append(f"{name}: must be a non-empty string")
        if isinstance(row.get("prompt_id"), str) and known_ids and row["prompt_id"] not in known_ids:
            problems.append(f"prompt_id: {row['prompt_id']!r} is not in {BENCHMARK_FILE}")
        if row.get("quality") not in CALIBRATION_QUALITIES:
            problems.append(f"quality: must be one of {', '.join(CALIBRATION_QUALITIES)}")
        labels = row.get("labels")
        if not isinstance(labels, dict) or set(labels) != set(DIMENSIONS):
            problems.append(f"labels: must be an object with exactly {', '.join(DIMENSIONS)}")
        elif not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5 for v in labels.values()):
            problems.append("labels: each score must be an integer 1 to 5")
        return problems

    return check


def _benchmark_ids(root: Path) -> set[str]:
    path = root / BENCHMARK_FILE
    try:
        return {item.id for item in load_prompt_set(path).items}
    except DentbenchError:
        return set()  # reported on its own when the prompt set is validated


def guess_kind(path: Path) -> str:
    name = path.name
    for kind, pattern in (("stage1", r"stage1"), ("stage2", r"stage2"), ("mcq", r"mcq"), ("calibration", r"calibration")):
        if re.search(pattern, name):
            return kind
    return "prompts"


def validate_file(path: str | Path, kind: str | None = None, root: Path = Path(".")) -> list[Problem]:
    path = Path(path)
    kind = kind or guess_kind(path)
    checkers: dict[str, Callable[[dict[str, Any], Path, int], list[str]]] = {
        "prompts": _check_prompt_row,
        "stage1": _check_training_row("topic", 60, 200),
        "stage2": _check_training_row("category", 60, 220),
        "mcq": _check_mcq_row,
        "calibration": _check_calibration_row(_benchmark_ids(root) if kind == "calibration" else set()),
    }
    if kind not in checkers:
        raise DentbenchError(f"--kind: {kind!r} is not one of {', '.join(checkers)}")
    check = checkers[kind]
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    try:
        for line, row in iter_jsonl(path):
            problems += [Problem(str(path), line, message) for message in check(row, path, line)]
            identity = row.get("id") if kind in ("prompts", "mcq", "calibration") else row.get("prompt")
            if isinstance(identity, str):
                if identity in seen:
                    label = "prompt" if kind in ("stage1", "stage2") else "id"
                    problems.append(Problem(str(path), line, f"{label}: duplicate (first on line {seen[identity]})"))
                seen.setdefault(identity, line)
    except DentbenchError as exc:  # unreadable JSON stops the file: later line numbers would be guesses
        problems.append(Problem("", None, str(exc)))
    return problems
