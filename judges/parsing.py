"""Lenient parsing of judge replies: fenced JSON, prose around it, "4/5", numbers as
strings, single quotes and trailing commas (json-repair). Ranges are validated; a reply
that still fails raises ReplyError with the reason, which the caller records as unscored.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import json_repair

FENCED = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
SCORE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:(?:/|out of)\s*5(?:\.0)?)?\s*$", re.I)
TRUE_WORDS = {"true", "yes", "y", "met", "present", "1"}
FALSE_WORDS = {"false", "no", "n", "not met", "unmet", "absent", "not present", "0"}


class ReplyError(ValueError):
    pass


@dataclass(frozen=True)
class ParsedReply:
    scores: dict[str, float]
    rationales: dict[str, str]
    key_points: tuple[bool, ...]
    red_flags: tuple[bool, ...]


def extract_json(reply: str) -> Any:
    if not reply or not reply.strip():
        raise ReplyError("empty reply")
    candidates = [m.group(1) for m in FENCED.finditer(reply)]
    start, end = reply.find("{"), reply.rfind("}")
    if start != -1 and end > start:
        candidates.append(reply[start : end + 1])
    for text in candidates:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            repaired = json_repair.loads(text)
            if isinstance(repaired, dict) and repaired:
                return repaired
    raise ReplyError("no JSON object in reply")


def parse_score(value: Any, name: str) -> float:
    if isinstance(value, dict):
        for key in ("score", "rating", "value", "grade"):
            if key in value:
                return parse_score(value[key], name)
        raise ReplyError(f"{name}: no score")
    if isinstance(value, bool):
        raise ReplyError(f"{name}: score is a boolean")
    if isinstance(value, (int, float)):
        score = float(value)
    elif isinstance(value, str) and (match := SCORE.match(value)):
        score = float(match.group(1))
    else:
        raise ReplyError(f"{name}: unreadable score {str(value)[:30]!r}")
    if not 1.0 <= score <= 5.0:
        raise ReplyError(f"{name}: score {score:g} outside 1-5")
    return score


def _rationale(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("rationale", "reason", "explanation", "justification"):
            if isinstance(value.get(key), str):
                return value[key].strip()
    return ""


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    if isinstance(value, dict):
        for key in ("met", "present", "value"):
            if key in value:
                return _flag(value[key], name)
    raise ReplyError(f"{name}: unreadable true/false {str(value)[:30]!r}")


def parse_flags(value: Any, expected: int, name: str) -> tuple[bool, ...]:
    if expected == 0:
        return ()
    if value is None:
        raise ReplyError(f"{name}: missing")
    if isinstance(value, dict):  # {"1": true, "2": false} or {"point text": true}
        value = list(value.values())
    if not isinstance(value, list):
        raise ReplyError(f"{name}: expected a list")
    if len(value) != expected:
        raise ReplyError(f"{name}: {len(value)} values for {expected} items")
    return tuple(_flag(v, name) for v in value)


def parse_reply(reply: str, dimensions: tuple[str, ...], n_key_points: int, n_red_flags: int) -> ParsedReply:
    data = extract_json(reply)
    if not isinstance(data, dict):
        raise ReplyError("reply JSON is not an object")
    data = {str(k).strip().lower().replace(" ", "_"): v for k, v in data.items()}
    scores_block = data.get("scores") if isinstance(data.get("scores"), dict) else data
    scores_block = {str(k).lower(): v for k, v in scores_block.items()}
    scores, rationales = {}, {}
    for name in dimensions:
        if name not in scores_block:
            raise ReplyError(f"{name}: missing")
        scores[name] = parse_score(scores_block[name], name)
        rationales[name] = _rationale(scores_block[name])
    key_points = parse_flags(data.get("key_points", data.get("key_points_met")), n_key_points, "key_points")
    red_flags = parse_flags(data.get("red_flags", data.get("red_flags_present")), n_red_flags, "red_flags")
    return ParsedReply(scores, rationales, key_points, red_flags)
