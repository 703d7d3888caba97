"""MedDialog (English) to the seed's training format: `dentbench data meddialog`.

Accepts both published shapes of UCSD26/medical_dialog:
- processed.en: {"description": "...", "utterances": ["patient: ...", "doctor: ..."]}
- en (raw):     {"dialogue_turns": {"speaker": [0, 1], "utterance": ["...", "..."]}} or a list of turns
from local JSON/JSONL files, or from the Hub where it is reachable.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.errors import DentbenchError, InfrastructureError
from benchmark.fileio import atomic_write_jsonl, iter_jsonl

from .formats import seed_row

HUB_DATASET = "UCSD26/medical_dialog"
HUB_CONFIG = "processed.en"
SPEAKER_PREFIX = re.compile(r"^\s*(patient|doctor)\s*:\s*", re.I)
GREETING = re.compile(r"^\s*(hi|hello|dear)\b[^.!?\n]{0,40}[.!?,]?\s*", re.I)  # "Hi, thanks for the query." noise


@dataclass(frozen=True)
class Exchange:
    question: str
    answer: str


def _turns(row: dict[str, Any], where: str) -> list[tuple[str, str]]:
    if "utterances" in row:
        turns = []
        for utterance in row["utterances"]:
            match = SPEAKER_PREFIX.match(str(utterance))
            if not match:
                raise DentbenchError(f"{where}: utterance without 'patient:' or 'doctor:' prefix")
            turns.append((match.group(1).lower(), str(utterance)[match.end():].strip()))
        return turns
    turns_field = row.get("dialogue_turns")
    if isinstance(turns_field, dict):
        speakers = ["patient" if s in (0, "Patient", "patient") else "doctor" for s in turns_field.get("speaker", [])]
        return list(zip(speakers, map(str, turns_field.get("utterance", []))))
    if isinstance(turns_field, list):
        return [("patient" if t.get("speaker") in (0, "Patient", "patient") else "doctor", str(t.get("utterance", "")))
                for t in turns_field]
    raise DentbenchError(f"{where}: expected 'utterances' (processed.en) or 'dialogue_turns' (en)")


def exchange_from_row(row: dict[str, Any], where: str) -> Exchange | None:
    """The first patient turn and the doctor's reply to it; None if the dialogue has no such pair."""
    turns = _turns(row, where)
    for (speaker, text), (next_speaker, reply) in zip(turns, turns[1:]):
        if speaker == "patient" and next_speaker == "doctor" and text.strip() and reply.strip():
            question = text.strip()
            description = str(row.get("description", "")).strip()
            if description and description.lower() not in question.lower():
                question = f"{description}\n{question}"
            return Exchange(question, reply.strip())
    return None


def _local_rows(paths: Iterable[Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in paths:
        if not path.exists():
            raise DentbenchError(f"{path}: file not found")
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DentbenchError(f"{path}: invalid JSON ({exc})") from None
            if not isinstance(data, list):
                raise DentbenchError(f"{path}: expected a JSON list of dialogues")
            for index, row in enumerate(data):
                yield f"{path}[{index}]", row
        else:
            for line, row in iter_jsonl(path):
                yield f"{path}:{line}", row


def _hub_rows(split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        from datasets import load_dataset

        dataset = load_dataset(HUB_DATASET, HUB_CONFIG, split=split)
    except Exception as exc:  # datasets raises many types for "offline"; all mean the same here
        raise InfrastructureError(
            f"cannot load {HUB_DATASET} ({HUB_CONFIG}) from the Hub ({type(exc).__name__}); "
            "download it elsewhere and pass the files with --input"
        ) from None
    for index, row in enumerate(dataset):
        yield f"{HUB_DATASET}[{index}]", row


def convert_meddialog(
    inputs: list[Path] | None,
    out: Path,
    *,
    min_words: int = 20,
    max_words: int = 300,
    limit: int | None = None,
    split: str = "train",
) -> tuple[int, int]:
    """Write seed-format rows; returns (written, skipped). Short or overlong replies are skipped."""
    rows = _local_rows(inputs) if inputs else _hub_rows(split)
    written, skipped, seen = [], 0, set()
    for where, row in rows:
        if not isinstance(row, dict):
            raise DentbenchError(f"{where}: expected a JSON object")
        exchange = exchange_from_row(row, where)
        if exchange is None or exchange.question in seen:
            skipped += 1
            continue
        answer = GREETING.sub("", exchange.answer, count=1).strip() or exchange.answer
        if not min_words <= len(answer.split()) <= max_words:
            skipped += 1
            continue
        seen.add(exchange.question)
        written.append(seed_row(exchange.question, answer, topic="meddialog", sources=[f"MedDialog-EN ({where})"]))
        if limit and len(written) >= limit:
            break
    if not written:
        raise DentbenchError(f"no usable dialogues in {', '.join(map(str, inputs or [HUB_DATASET]))}")
    atomic_write_jsonl(out, written)
    return len(written), skipped

