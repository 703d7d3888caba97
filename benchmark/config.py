"""Run configuration: TOML file plus CLI overrides, validated before anything is written."""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from judges.llm_judge import EndpointJudgeConfig as _Endpoint

from .errors import DentbenchError
from .records import GenerationConfig

CHAT_FORMATS = ("chat_template", "instruction")
MEDICAL_SUITE = (  # lm-eval's standard medical tasks, for users with Hub access
    "medmcqa", "medqa_4options", "pubmedqa", "mmlu_anatomy", "mmlu_clinical_knowledge", "mmlu_college_medicine",
    "mmlu_medical_genetics", "mmlu_professional_medicine", "mmlu_college_biology",
)
TASK_ALIASES = {"medical_suite": MEDICAL_SUITE}
PRECISIONS = ("4bit", "8bit", "bf16", "fp32")


@dataclass(frozen=True)
class ContestantConfig:
    name: str
    source: str
    base: str | None = None  # adapters: override the base named in adapter_config.json
    api_key_env: str | None = None  # openai: the environment variable holding the key
    chat_format: str | None = None  # overrides [run].chat_format for this contestant


@dataclass(frozen=True)
class EndpointConfig:
    model: str
    base_url: str
    api_key_env: str = "OPENAI_API_KEY"


@dataclass(frozen=True)
class JudgeSettings:
    """[judge]: "reference" (offline, default) or "openai" (any OpenAI-compatible endpoint)."""

    kind: str = "reference"
    model: str | None = None
    base_url: str | None = None
    rubric: str | None = None  # default: judges/rubrics/dental_v1.toml
    # endpoint settings default to the judge's own, so the two can never drift apart
    api_key_env: str = _Endpoint.api_key_env
    concurrency: int = _Endpoint.concurrency
    timeout: float = _Endpoint.timeout
    max_retries: int = _Endpoint.max_retries
    parse_retries: int = _Endpoint.parse_retries
    max_tokens: int = _Endpoint.max_tokens
    temperature: float = _Endpoint.temperature
    repeats: int = 1  # k samples per answer; the spread is reported
    panel: tuple[EndpointConfig, ...] = ()  # extra endpoint judges; agreement is Krippendorff's alpha
    pairwise_baseline: str | None = None  # contestant to compare every other one against, both orders
    enabled: bool = True


@dataclass(frozen=True)
class LmEvalSettings:
    """[lm_eval]: tasks run for every contestant after generation (off unless the section exists)."""

    tasks: tuple[str, ...] = ("dental_implant_mcq",)
    num_fewshot: int = 0
    limit: int | None = None  # items per task (keep CPU runs short)
    batch_size: int = 8
    apply_chat_template: bool = False
    enabled: bool = False

    def expanded(self) -> list[str]:
        out: list[str] = []
        for task in self.tasks:
            out += [t for t in TASK_ALIASES.get(task, (task,)) if t not in out]
        return out


@dataclass(frozen=True)
class RunConfig:
    prompts: str = "prompts/dental_implant_v1.jsonl"
    contestants: tuple[ContestantConfig, ...] = ()
    max_new_tokens: int = 256
    batch_size: int = 16
    precision: str = "4bit"
    chat_format: str = "chat_template"
    system_prompt: str | None = None
    seed: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    sample_per_category: int | None = None  # a stratified subset (the demo); None = the full set
    limit: int | None = None
    output_dir: str = "outputs"
    trust_remote_code: bool = False
    allow_pickle: bool = False
    concurrency: int = 8  # requests in flight per endpoint contestant
    request_timeout: float = 120.0
    baseline: str | None = None  # contestant the report and gate compare with (default: the first)
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    lm_eval: LmEvalSettings = field(default_factory=LmEvalSettings)
    source_file: str = field(default="<defaults>", compare=False)

    def generation(self, chat_format: str | None = None) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            chat_format=chat_format or self.chat_format,  # type: ignore[arg-type]
            system_prompt=self.system_prompt,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)
              if f.name not in ("contestants", "source_file", "judge", "lm_eval")}
LM_EVAL_TYPES: dict[str, tuple[type, ...]] = {
    "tasks": (list,), "num_fewshot": (int,), "limit": (int,), "batch_size": (int,), "apply_chat_template": (bool,),
    "enabled": (bool,),
}
JUDGE_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,), "model": (str,), "base_url": (str,), "api_key_env": (str,), "rubric": (str,),
    "concurrency": (int,), "timeout": (int, float), "max_retries": (int,), "parse_retries": (int,),
    "max_tokens": (int,), "temperature": (int, float), "repeats": (int,), "pairwise_baseline": (str,),
    "enabled": (bool,), "panel": (list,),
}
CONTESTANT_FIELDS = {f.name for f in dataclasses.fields(ContestantConfig)}
TYPES: dict[str, tuple[type, ...]] = {
    "prompts": (str,), "max_new_tokens": (int,), "batch_size": (int,), "precision": (str,), "chat_format": (str,),
    "system_prompt": (str,), "seed": (int,), "do_sample": (bool,), "temperature": (int, float), "top_p": (int, float),
    "sample_per_category": (int,), "limit": (int,), "output_dir": (str,), "trust_remote_code": (bool,),
    "allow_pickle": (bool,), "concurrency": (int,), "request_timeout": (int, float), "baseline": (str,),
}


def _check_value(where: str, key: str, value: Any) -> None:
    expected = TYPES[key]
    if isinstance(value, bool) and bool not in expected or not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in expected)
        raise DentbenchError(f"{where}: '{key}' must be {names}, got {value!r:.40}")
    if key in ("max_new_tokens", "batch_size", "sample_per_category", "limit", "concurrency") and value <= 0:
        raise DentbenchError(f"{where}: '{key}' must be positive, got {value}")
    if key == "precision" and value not in PRECISIONS:
        raise DentbenchError(f"{where}: 'precision' must be one of {', '.join(PRECISIONS)}, got {value!r}")
    if key == "chat_format" and value not in CHAT_FORMATS:
        raise DentbenchError(f"{where}: 'chat_format' must be one of {', '.join(CHAT_FORMATS)}, got {value!r}")


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a TOML config (or defaults), apply CLI overrides (None values are ignored)."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DentbenchError(f"{path}: config file not found")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise DentbenchError(f"{path}: invalid TOML ({exc})") from None
        except UnicodeDecodeError:
            raise DentbenchError(f"{path}: not valid UTF-8") from None
        source = str(path)
    unknown = sorted(set(data) - {"run", "contestants", "judge", "lm_eval"})
    if unknown:
        raise DentbenchError(f"{source}: unknown section [{unknown[0]}] (known: [run], [[contestants]], [judge], [lm_eval])")
    run = dict(data.get("run", {}))
    for key, value in run.items():
        if key not in RUN_FIELDS:
            raise DentbenchError(f"{source}: unknown setting [run].{key}")
        _check_value(f"{source} [run]", key, value)
    for key, value in (overrides or {}).items():
        if value is not None:
            _check_value("command line", key, value)
            run[key] = value
    contestants = []
    for index, entry in enumerate(data.get("contestants", []), start=1):
        where = f"{source} [[contestants]] #{index}"
        unknown = sorted(set(entry) - CONTESTANT_FIELDS)
        if unknown:
            raise DentbenchError(f"{where}: unknown setting '{unknown[0]}'")
        for key in ("name", "source"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise DentbenchError(f"{where}: '{key}' must be a non-empty string")
        if "chat_format" in entry:
            _check_value(where, "chat_format", entry["chat_format"])
        contestants.append(ContestantConfig(**entry))
    names = [c.name for c in contestants]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise DentbenchError(f"{source}: contestant name '{duplicate}' appears twice")
    judge = parse_judge(data.get("judge", {}), f"{source} [judge]")
    if run.get("baseline") and run["baseline"] not in names:
        raise DentbenchError(f"{source} [run]: baseline '{run['baseline']}' is not a contestant")
    if judge.pairwise_baseline and judge.pairwise_baseline not in names:
        raise DentbenchError(f"{source} [judge]: pairwise_baseline '{judge.pairwise_baseline}' is not a contestant")
    lm_eval = parse_lm_eval(data["lm_eval"], f"{source} [lm_eval]") if "lm_eval" in data else LmEvalSettings()
    return RunConfig(contestants=tuple(contestants), source_file=source, judge=judge, lm_eval=lm_eval, **run)


def parse_lm_eval(data: dict[str, Any], where: str) -> LmEvalSettings:
    for key, value in data.items():
        if key not in LM_EVAL_TYPES:
            raise DentbenchError(f"{where}: unknown setting '{key}'")
        if isinstance(value, bool) and bool not in LM_EVAL_TYPES[key] or not isinstance(value, LM_EVAL_TYPES[key]):
            raise DentbenchError(f"{where}: '{key}' must be {' or '.join(t.__name__ for t in LM_EVAL_TYPES[key])}")
    tasks = data.get("tasks", ["dental_implant_mcq"])
    if not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise DentbenchError(f"{where}: 'tasks' must be a non-empty list of task names")
    for key in ("limit", "batch_size"):
        if key in data and data[key] <= 0:
            raise DentbenchError(f"{where}: '{key}' must be positive")
    return LmEvalSettings(**{**data, "tasks": tuple(tasks), "enabled": data.get("enabled", True)})


def parse_judge(data: dict[str, Any], where: str) -> JudgeSettings:
    for key, value in data.items():
        if key not in JUDGE_TYPES:
            raise DentbenchError(f"{where}: unknown setting '{key}'")
        expected = JUDGE_TYPES[key]
        if isinstance(value, bool) and bool not in expected or not isinstance(value, expected):
            raise DentbenchError(f"{where}: '{key}' must be {' or '.join(t.__name__ for t in expected)}")
        if key in ("concurrency", "repeats", "max_tokens") and value <= 0:
            raise DentbenchError(f"{where}: '{key}' must be positive, got {value}")
    kind = data.get("kind", "reference")
    if kind not in ("reference", "openai"):
        raise DentbenchError(f"{where}: 'kind' must be reference or openai, got {kind!r}")
    if kind == "openai" and not (data.get("model") and data.get("base_url")):
        raise DentbenchError(f"{where}: kind = \"openai\" needs 'model' and 'base_url'")
    panel = []
    for index, member in enumerate(data.get("panel", []), start=1):
        if not isinstance(member, dict) or not member.get("model") or not member.get("base_url"):
            raise DentbenchError(f"{where}: panel member #{index} needs 'model' and 'base_url'")
        unknown = sorted(set(member) - {"model", "base_url", "api_key_env"})
        if unknown:
            raise DentbenchError(f"{where}: panel member #{index}: unknown setting '{unknown[0]}'")
        panel.append(EndpointConfig(**member))
    if panel and kind != "openai":
        raise DentbenchError(f"{where}: a panel needs kind = \"openai\" for the first judge")
    return JudgeSettings(**{**data, "panel": tuple(panel)})


def with_contestant(config: RunConfig, name: str, source: str) -> RunConfig:
    """Replace the contestant called `name` (keeping its other settings), or add it."""
    if any(c.name == name for c in config.contestants):
        contestants = tuple(
            dataclasses.replace(c, source=source, base=None) if c.name == name else c for c in config.contestants
        )
    else:
        contestants = config.contestants + (ContestantConfig(name=name, source=source),)
    return dataclasses.replace(config, contestants=contestants)


def with_adapter(config: RunConfig, adapter: str, name: str = "candidate") -> RunConfig:
    """`--adapter PATH`: replace the contestant called `name`, or add it."""
    return with_contestant(config, name, adapter)
