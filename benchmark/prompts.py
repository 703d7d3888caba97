"""Load and validate prompt sets (dentbench's JSONL, or the seed's prompt/response JSONL)."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from .errors import DentbenchError, located
from .fileio import iter_jsonl, sha256_file, sha256_text
from .records import PromptItem, PromptSet, RequiredTerm

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # ids become file and HTML anchors
SEED_PATTERN = re.compile(r"^\s*### Instruction:\s*\n(?P<question>.*?)\n\s*### Response:\s*$", re.S)
REQUIRED = ("id", "question", "reference")
OPTIONAL_STR = ("category", "difficulty", "voice")
OPTIONAL_LIST = ("key_points", "red_flags", "sources")
KNOWN_FIELDS = set(REQUIRED) | set(OPTIONAL_STR) | set(OPTIONAL_LIST) | {"required_terms"}


def parse_seed_prompt(prompt: str) -> str | None:
    """The question inside '### Instruction:\\n...\\n\\n### Response:', or None."""
    match = SEED_PATTERN.match(prompt)
    return match.group("question").strip() if match else None


def _string_list(path: Path, line: int, name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise located(path, line, f"field '{name}' must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _required_terms(path: Path, line: int, value: Any) -> tuple[RequiredTerm, ...]:
    """Accept "term", ["term", "synonym", ...] or {"term": ..., "synonyms": [...]}."""
    if not isinstance(value, list):
        raise located(path, line, "field 'required_terms' must be a list")
    terms = []
    for entry in value:
        if isinstance(entry, str) and entry.strip():
            terms.append(RequiredTerm(entry.strip()))
        elif isinstance(entry, list) and entry and all(isinstance(v, str) and v.strip() for v in entry):
            terms.append(RequiredTerm(entry[0].strip(), tuple(v.strip() for v in entry[1:])))
        elif isinstance(entry, dict) and isinstance(entry.get("term"), str) and entry["term"].strip():
            synonyms = entry.get("synonyms", [])
            terms.append(RequiredTerm(entry["term"].strip(), _string_list(path, line, "required_terms.synonyms", synonyms)))
        else:
            raise located(path, line, f"field 'required_terms' has an invalid entry: {entry!r:.60}")
    return tuple(terms)


def _item_from_native(path: Path, line: int, row: dict[str, Any]) -> PromptItem:
    unknown = sorted(set(row) - KNOWN_FIELDS)
    if unknown:
        raise located(path, line, f"unknown field '{unknown[0]}' (known: {', '.join(sorted(KNOWN_FIELDS))})")
    for name in REQUIRED:
        if name not in row:
            raise located(path, line, f"missing required field '{name}'")
        if not isinstance(row[name], str) or not row[name].strip():
            raise located(path, line, f"field '{name}' must be a non-empty string")
    if not ID_PATTERN.match(row["id"]):
        raise located(path, line, f"field 'id' {row['id']!r:.40} must be 1-64 letters, digits, '_', '-' or '.'")
    extra: dict[str, Any] = {}
    for name in OPTIONAL_STR:
        if name in row:
            if not isinstance(row[name], str) or not row[name].strip():
                raise located(path, line, f"field '{name}' must be a non-empty string")
            extra[name] = row[name].strip()
    for name in OPTIONAL_LIST:
        if name in row:
            extra[name] = _string_list(path, line, name, row[name])
    if "required_terms" in row:
        extra["required_terms"] = _required_terms(path, line, row["required_terms"])
    return PromptItem(id=row["id"], question=row["question"].strip(), reference=row["reference"].strip(), **extra)


def _item_from_seed(path: Path, line: int, row: dict[str, Any]) -> PromptItem:
    prompt, response = row.get("prompt"), row.get("response")
    if not isinstance(prompt, str) or not isinstance(response, str) or not response.strip():
        raise located(path, line, "seed rows need string fields 'prompt' and 'response'")
    question = parse_seed_prompt(prompt)
    if not question:
        raise located(path, line, "field 'prompt' is not in the '### Instruction:\\n...\\n\\n### Response:' format")
    return PromptItem(id="seed-" + sha256_text(question)[:12], question=question, reference=response.strip())


def load_prompt_set(path: str | Path) -> PromptSet:
    path = Path(path)
    items: list[PromptItem] = []
    first_line: dict[str, int] = {}
    for line, row in iter_jsonl(path):
        item = _item_from_seed(path, line, row) if "prompt" in row and "id" not in row else _item_from_native(path, line, row)
        if item.id in first_line:
            raise located(path, line, f"duplicate id '{item.id}' (first on line {first_line[item.id]})")
        first_line[item.id] = line
        items.append(item)
    return PromptSet(path=str(path), version=path.stem, sha256=sha256_file(path), items=tuple(items))


def stratified_sample(prompt_set: PromptSet, per_category: int) -> PromptSet:
    """The first `per_category` items of each category, in file order: a stable demo subset."""
    if per_category <= 0:
        raise DentbenchError(f"sample_per_category must be positive, got {per_category}")
    taken: dict[str, int] = defaultdict(int)
    chosen = []
    for item in prompt_set.items:
        if taken[item.category] < per_category:
            taken[item.category] += 1
            chosen.append(item)
    return PromptSet(prompt_set.path, prompt_set.version, prompt_set.sha256, tuple(chosen))


def limit_prompts(prompt_set: PromptSet, limit: int) -> PromptSet:
    if limit <= 0:
        raise DentbenchError(f"limit must be positive, got {limit}")
    return PromptSet(prompt_set.path, prompt_set.version, prompt_set.sha256, prompt_set.items[:limit])
