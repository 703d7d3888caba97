"""Judge records. Judges take plain dicts for prompt items (PromptItem.to_dict()) and
answer strings, and return these; they never import the harness."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DIMENSIONS = ("tone", "accuracy", "terminology")


@dataclass(frozen=True)
class Verdict:
    """What one judge said about one answer (before it is tied to a run)."""

    scores: dict[str, float] | None  # None: unscored (never a 1)
    rationales: dict[str, str] = field(default_factory=dict)
    key_points_met: tuple[bool, ...] = ()
    red_flags_present: tuple[bool, ...] = ()
    unscored_reason: str | None = None
    judge_model: str = ""  # the model id the endpoint reported (or the offline judge's name)
    raw_reply: str = ""  # kept for audit, truncated

    @property
    def scored(self) -> bool:
        return self.scores is not None

    @property
    def red_flag(self) -> bool:
        return any(self.red_flags_present)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            scores=data.get("scores"),
            rationales=data.get("rationales", {}),
            key_points_met=tuple(data.get("key_points_met", ())),
            red_flags_present=tuple(data.get("red_flags_present", ())),
            unscored_reason=data.get("unscored_reason"),
            judge_model=data.get("judge_model", ""),
            raw_reply=data.get("raw_reply", ""),
        )


def unscored(reason: str, judge_model: str = "", raw_reply: str = "") -> Verdict:
    return Verdict(scores=None, unscored_reason=reason, judge_model=judge_model, raw_reply=raw_reply[:2000])
