"""Turn a training config into a TrainPlan: resolve the base, read and check the data,
fingerprint everything, refuse an adapter that does not fit. No Unsloth here: this runs in
the benchmark's process too (the demo decides from it whether a stage is up to date)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.config import TrainConfig
from training.engine import RECORD_VERSION, TRAINING_RECORD, Example, TrainPlan

from .errors import DentbenchError, located
from .fileio import iter_jsonl, sha256_json
from .specs import folder_identity, model_identity, parse_source, resolve_weights
from .store import Store

MERGE_RECORD = "merge.json"


def read_examples(path: str | Path, limit: int | None = None) -> tuple[tuple[Example, ...], dict[str, Any]]:
    """The seed's {"prompt", "response"} rows (other fields are allowed and ignored)."""
    from .fileio import sha256_file

    path = Path(path)
    examples = []
    for line, row in iter_jsonl(path):
        for field in ("prompt", "response"):
            value = row.get(field)
            if value is None:
                raise located(path, line, f"missing required field '{field}'")
            if not isinstance(value, str) or not value.strip():
                raise located(path, line, f"field '{field}' must be a non-empty string")
        examples.append(Example(prompt=row["prompt"], response=row["response"].strip(), origin=f"{path}:{line}"))
        if limit is not None and len(examples) >= limit:
            break
    info = {"path": str(path.resolve()), "sha256": sha256_file(path), "rows": len(examples)}
    return tuple(examples), info


def resolve_base(source: str, models_dir: Path, store: Store) -> tuple[Path, str]:
    spec = parse_source("base", source, setting="train: base")
    if spec.kind not in ("hub", "local", "embedded"):
        raise DentbenchError(f"train: base {source!r} must be a full model (hub id, local folder or embedded:NAME)")
    folder = resolve_weights(spec, models_dir)
    return folder, folder_identity(folder, store)


def adapter_identity(adapter: Path, base_source: str, models_dir: Path, store: Store) -> str:
    """The identity the benchmark gives this adapter on this base (same hash, same cache)."""
    spec = parse_source("init", str(adapter), base=base_source, setting="train: init_adapter")
    if spec.kind != "adapter":
        raise DentbenchError(f"train: init_adapter {adapter} is not a LoRA adapter folder (no adapter_config.json)")
    return model_identity(spec, store, models_dir)


def check_fits(adapter: Path, base_folder: Path, base_source: str) -> None:
    from .loading import base_module_shapes, check_adapter_fits

    check_adapter_fits(base_module_shapes(base_folder), base_source, adapter)


def build_plan(config: TrainConfig, models_dir: Path, store: Store, base_override: tuple[Path, str, str] | None = None) -> TrainPlan:
    """base_override: (folder, source, identity) of a base prepared by the caller (stage 2 'merged')."""
    examples, data_info = read_examples(config.data, config.limit)
    base_folder, base_identity = resolve_base(config.base, models_dir, store)
    base_source = config.base
    init, init_identity = None, None
    if config.init_adapter is not None:
        init = Path(config.init_adapter).expanduser().resolve()
        if not (init / "adapter_config.json").is_file():
            raise DentbenchError(f"train: init_adapter {init} is not a LoRA adapter folder (no adapter_config.json)")
        check_fits(init, base_folder, base_source)
        init_identity = adapter_identity(init, base_source, models_dir, store)
    if base_override is not None:
        base_folder, base_source, base_identity = base_override
    output = Path(config.output).expanduser().resolve()
    fingerprint = {k: v for k, v in config.to_dict().items() if k not in ("output", "save_steps", "save_total_limit")}
    plan_hash = sha256_json({"record_version": RECORD_VERSION, "config": fingerprint, "data": data_info["sha256"],
                             "base": base_identity, "init": init_identity})
    return TrainPlan(config=config, base_folder=base_folder, base_source=base_source, base_identity=base_identity,
                     examples=examples, data_files=(data_info,), output=output, plan_hash=plan_hash,
                     init_adapter=init, init_adapter_identity=init_identity)


def recorded_plan_hash(output: Path) -> str | None:
    record = output / TRAINING_RECORD
    if not (output / "adapter_model.safetensors").is_file() or not record.is_file():
        return None
    try:
        return json.loads(record.read_text()).get("plan_hash")
    except json.JSONDecodeError:
        return None
