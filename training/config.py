"""Training settings: one frozen record per run, read from TOML ([train]) plus CLI overrides.

Defaults follow Unsloth's Mistral-7B QLoRA notebook (r=16, alpha=16, no dropout, all linear
layers, lr 2e-4 linear with 5 warmup steps, batch 2 x 4 accumulation, adamw_8bit, seed 3407);
configs/train_*_embedded.toml size a run for 2 CPU cores.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Stage = Literal["stage1", "stage2"]
STAGES = ("stage1", "stage2")
FORMATS = ("instruction", "chat_template")
STAGE2_MODES = ("continue", "merged")
PRECISIONS = ("4bit", "16bit")
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")


class TrainingError(ValueError):
    """A setting or input the user can fix; the CLI prints it as one line (exit 2)."""


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ALL_LINEAR


@dataclass(frozen=True)
class TrainConfig:
    stage: Stage
    base: str = "mistralai/Mistral-7B-Instruct-v0.1"  # hub id, local folder or embedded:NAME
    data: str = ""
    output: str = ""
    init_adapter: str | None = None  # stage 2: the stage 1 adapter
    stage2_mode: str = "continue"  # continue = train the stage 1 adapter further; merged = fresh adapter on base+stage 1
    format: str = "instruction"  # the seed's "### Instruction:/### Response:" text, or the tokenizer's chat template
    precision: str = "4bit"
    lora: LoraSettings = LoraSettings()
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = 2e-4
    lr_scheduler: str = "linear"
    warmup_steps: int = 5
    weight_decay: float = 0.01
    batch_size: int = 2
    grad_accum: int = 4
    max_seq_length: int = 2048
    seed: int = 3407
    optim: str = "adamw_8bit"  # the CPU path swaps in adamw_torch (8-bit Adam needs CUDA) and records it
    # true/"unsloth": recompute activations, offloading the saved ones to CPU memory (Unsloth's,
    # on a GPU); "plain": recompute only; false: keep all activations (fastest, most memory)
    gradient_checkpointing: bool | str = True
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 1
    limit: int | None = None  # train on the first N rows only (demos, tests)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["lora"]["target_modules"] = list(self.lora.target_modules)
        return out


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_LORA_FIELDS = {f.name for f in dataclasses.fields(LoraSettings)}


def _check(config: TrainConfig, setting: str) -> TrainConfig:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise TrainingError(f"{setting}: {message}")

    need(config.stage in STAGES, f"stage must be one of {', '.join(STAGES)}")
    need(bool(config.data), "'data' (a JSONL file of prompt/response rows) is required")
    need(bool(config.output), "'output' (the adapter folder to write) is required")
    need(config.format in FORMATS, f"format must be one of {', '.join(FORMATS)}")
    need(config.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
    need(config.stage2_mode in STAGE2_MODES, f"stage2_mode must be one of {', '.join(STAGE2_MODES)}")
    need(config.lr_scheduler in SCHEDULERS, f"lr_scheduler must be one of {', '.join(SCHEDULERS)}")
    need(config.lora.r > 0 and config.lora.alpha > 0, "lora r and alpha must be positive")
    need(0.0 <= config.lora.dropout < 1.0, "lora dropout must be in [0, 1)")
    need(len(config.lora.target_modules) > 0, "lora target_modules must name at least one module")
    need(config.epochs > 0 or config.max_steps > 0, "set epochs > 0 or max_steps > 0")
    need(config.learning_rate > 0, "learning_rate must be positive")
    need(config.batch_size > 0 and config.grad_accum > 0, "batch_size and grad_accum must be positive")
    need(config.max_seq_length >= 32, "max_seq_length must be at least 32")
    need(config.save_steps > 0 and config.logging_steps > 0, "save_steps and logging_steps must be positive")
    need(config.limit is None or config.limit > 0, "limit must be positive")
    need(config.gradient_checkpointing in (True, False, "unsloth", "plain"),
         "gradient_checkpointing must be true, false, \"unsloth\" or \"plain\"")
    if config.stage == "stage2":
        need(config.init_adapter is not None, "stage 2 needs 'init_adapter' (the stage 1 adapter folder)")
    else:
        need(config.init_adapter is None, "'init_adapter' belongs to stage 2")
    return config


def _coerce(name: str, value: Any, setting: str) -> Any:
    field = _FIELDS[name]
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    if value is None:
        return None
    wants_int = kind in ("int", "int | None")
    if wants_int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise TrainingError(f"{setting}: '{name}' must be an integer, not {value!r:.40}")
    if kind == "float" and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise TrainingError(f"{setting}: '{name}' must be a number, not {value!r:.40}")
    if kind == "bool" and not isinstance(value, bool):
        raise TrainingError(f"{setting}: '{name}' must be true or false")
    if kind == "bool | str" and not isinstance(value, (bool, str)):
        raise TrainingError(f"{setting}: '{name}' must be true, false or a mode name")
    if kind in ("str", "str | None", "Stage") and not isinstance(value, str):
        raise TrainingError(f"{setting}: '{name}' must be a string")
    return float(value) if kind == "float" else value


def _lora(table: Any, setting: str) -> LoraSettings:
    if not isinstance(table, dict):
        raise TrainingError(f"{setting}: [train.lora] must be a table")
    unknown = set(table) - _LORA_FIELDS
    if unknown:
        raise TrainingError(f"{setting}: unknown key(s) in [train.lora]: {', '.join(sorted(unknown))}")
    values = dict(table)
    if "target_modules" in values:
        modules = values["target_modules"]
        if modules == "all-linear":
            modules = list(ALL_LINEAR)
        if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
            raise TrainingError(f"{setting}: lora target_modules must be a list of module names or \"all-linear\"")
        values["target_modules"] = tuple(modules)
    for key in ("r", "alpha"):
        if key in values and not (isinstance(values[key], int) and not isinstance(values[key], bool)):
            raise TrainingError(f"{setting}: lora '{key}' must be an integer")
    if "dropout" in values:
        if isinstance(values["dropout"], bool) or not isinstance(values["dropout"], (int, float)):
            raise TrainingError(f"{setting}: lora 'dropout' must be a number")
        values["dropout"] = float(values["dropout"])
    return LoraSettings(**values)


def load_train_config(path: str | Path | None, stage: Stage, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read [train] (and [train.lora]) from a TOML file, apply non-None overrides, validate."""
    table: dict[str, Any] = {}
    setting = "train"
    if path is not None:
        path = Path(path)
        setting = str(path)
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TrainingError(f"{path}: training config not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise TrainingError(f"{path}: invalid TOML ({exc})") from None
        unknown_sections = set(document) - {"train"}
        if unknown_sections:
            raise TrainingError(f"{path}: unknown section(s): {', '.join(sorted(unknown_sections))} (expected [train])")
        table = dict(document.get("train", {}))
    lora_overrides = {k.removeprefix("lora_"): v for k, v in (overrides or {}).items() if k.startswith("lora_") and v is not None}
    lora = _lora({**table.pop("lora", {}), **lora_overrides}, setting)
    values = {**table, **{k: v for k, v in (overrides or {}).items() if v is not None and not k.startswith("lora_")}}
    if "stage" in values and values["stage"] != stage:
        raise TrainingError(f"{setting}: this config is for {values['stage']}, not {stage}")
    values["stage"] = stage
    unknown = set(values) - set(_FIELDS)
    if unknown:
        raise TrainingError(f"{setting}: unknown key(s) in [train]: {', '.join(sorted(unknown))}")
    coerced = {name: _coerce(name, value, setting) for name, value in values.items() if name != "lora"}
    return _check(TrainConfig(lora=lora, **coerced), setting)
