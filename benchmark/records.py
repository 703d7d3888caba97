"""The records that cross rooms: small, frozen, JSON-serialisable.

Like simple-evals' types module: plain dataclasses, nothing clever. Judges and
reports receive these (or their dicts) and never import the orchestration.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# The seed's training format: the adapters under test were trained on exactly this (one definition, shared).
from training.formats import INSTRUCTION_TEMPLATE  # noqa: F401

ChatFormat = Literal["chat_template", "instruction"]
Precision = Literal["4bit", "8bit", "bf16", "fp32"]
ContestantKind = Literal["hub", "local", "adapter", "embedded", "openai", "answers"]



@dataclass(frozen=True)
class RequiredTerm:
    term: str
    synonyms: tuple[str, ...] = ()

    def forms(self) -> tuple[str, ...]:
        return (self.term, *self.synonyms)


@dataclass(frozen=True)
class PromptItem:
    id: str
    question: str
    reference: str
    category: str = "uncategorised"
    difficulty: str = "unrated"
    voice: str = "unknown"
    key_points: tuple[str, ...] = ()
    required_terms: tuple[RequiredTerm, ...] = ()
    red_flags: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PromptSet:
    path: str
    version: str  # the file stem, e.g. "dental_implant_v1"; results compare only within a version
    sha256: str  # hash of the file bytes: any edit is a new set
    items: tuple[PromptItem, ...]

    def by_id(self) -> dict[str, PromptItem]:
        return {item.id: item for item in self.items}


@dataclass(frozen=True)
class GenerationConfig:
    """Everything that changes what a model writes. Part of every answer's cache key."""

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    chat_format: ChatFormat = "chat_template"
    system_prompt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """One contestant: what the user named and how it resolves."""

    name: str
    kind: ContestantKind
    source: str  # as the user wrote it
    location: str  # hub id, absolute folder, file, or base URL
    base: ModelSpec | None = None  # for adapters: the model the adapter sits on
    endpoint_model: str | None = None  # for openai: the model name to request
    api_key_env: str | None = None  # for openai: the variable that holds the key (never the key)
    chat_format: ChatFormat | None = None  # overrides the run's chat format

    @property
    def loads_weights(self) -> bool:
        return self.kind in ("hub", "local", "adapter", "embedded")

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "source": self.source}
        if self.base is not None:
            out["base"] = self.base.source
        if self.endpoint_model:
            out["endpoint_model"] = self.endpoint_model
        if self.chat_format:
            out["chat_format"] = self.chat_format
        return out


@dataclass(frozen=True)
class Answer:
    prompt_id: str
    contestant: str
    model_identity: str
    text: str
    key: str  # cache key: identity + prompt text + generation config + chat format
    new_tokens: int
    seconds: float  # wall time of the batch this answer came from, shared out per row
    finish_reason: str  # "stop", "length" or "replayed"
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ContestantSummary:
    name: str
    kind: str
    source: str
    identity: str
    answers: int
    generated: int  # answers made in this run (the rest came from the cache)
    missing: int
    mean_answer_words: float
    tokens_per_second: float | None  # None when everything came from the cache

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_dir: str
    prompt_set_version: str
    prompt_set_sha256: str
    n_prompts: int
    contestants: tuple[ContestantSummary, ...] = field(default_factory=tuple)
    wall_seconds: float = 0.0
    judge: dict[str, Any] = field(default_factory=dict)  # judges, rubric and template hashes
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # contestant -> judge aggregates
    baseline: str | None = None  # the contestant others are compared with
    paired: dict[str, dict[str, Any]] = field(default_factory=dict)  # contestant -> paired differences vs baseline
    by_category: dict[str, dict[str, float | None]] = field(default_factory=dict)  # category -> contestant -> overall
    lm_eval: dict[str, dict[str, Any]] = field(default_factory=dict)  # contestant -> "task.metric" -> value, stderr

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
