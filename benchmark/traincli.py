"""`dentbench train` and `dentbench export`: the training module's command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import DentbenchError

TRAIN_DESCRIPTION = (
    "Train one LoRA stage with Unsloth in 4-bit: stage1 teaches tone on medical dialogues, stage2 continues "
    "that adapter on implant Q&A (or, with --stage2-mode merged, trains a fresh adapter on base + stage 1). "
    "The adapter folder gets training.json (provenance, loss curve) and loss.svg. A rerun with the same "
    "inputs is skipped; --resume continues a killed run from its last checkpoint."
)


def add_train_commands(sub: Any) -> None:
    train = sub.add_parser("train", help="train a LoRA stage (Unsloth, 4-bit)", description=TRAIN_DESCRIPTION)
    train.add_argument("stage", choices=["stage1", "stage2"])
    train.add_argument("--config", help="training config (TOML, [train] section); see configs/train_*.toml")
    train.add_argument("--base", help="base model: hub id, local folder or embedded:smollm2-135m-instruct")
    train.add_argument("--data", help="JSONL of {\"prompt\", \"response\"} rows")
    train.add_argument("--output", help="adapter folder to write")
    train.add_argument("--init-adapter", help="stage2: the stage 1 adapter folder")
    train.add_argument("--stage2-mode", choices=["continue", "merged"])
    train.add_argument("--format", choices=["instruction", "chat_template"])
    train.add_argument("--precision", choices=["4bit", "16bit"])
    train.add_argument("--epochs", type=float)
    train.add_argument("--max-steps", type=int, help="stop after N optimiser steps (overrides --epochs)")
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--grad-accum", type=int)
    train.add_argument("--max-seq-length", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--lora-r", type=int)
    train.add_argument("--lora-alpha", type=int)
    train.add_argument("--lora-dropout", type=float)
    train.add_argument("--save-steps", type=int, help="checkpoint every N steps (what --resume restarts from)")
    train.add_argument("--limit", type=int, help="train on the first N rows only")
    train.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    train.add_argument("--force", action="store_true", help="retrain even if the output is up to date; drop old checkpoints")
    train.add_argument("--output-dir", default="outputs", help="where models and the store go (default outputs)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(handler=cmd_train)

    export = sub.add_parser("export", help="merge an adapter into its 16-bit base; write an Ollama Modelfile or GGUF",
                            description="Merge into the unquantised base (never the 4-bit one) and save safetensors that "
                                        "`dentbench run` loads as a full model.")
    export.add_argument("--adapter", required=True, help="LoRA adapter folder (its base comes from training.json)")
    export.add_argument("--base", help="override the adapter's base")
    export.add_argument("--merged", metavar="OUT", help="write the merged model folder here")
    export.add_argument("--ollama", metavar="OUT", help="write an Ollama folder (merged weights + Modelfile) here")
    export.add_argument("--gguf", metavar="FILE", help="write a GGUF file (needs llama.cpp's convert_hf_to_gguf.py)")
    export.add_argument("--llama-cpp", metavar="DIR", help="llama.cpp checkout holding convert_hf_to_gguf.py (or $LLAMA_CPP_DIR)")
    export.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    export.add_argument("--output-dir", default="outputs")
    export.set_defaults(handler=cmd_export)


def _train_config(args: argparse.Namespace):
    from training.config import TrainingError, load_train_config

    overrides = {
        "base": args.base, "data": args.data, "output": args.output, "init_adapter": args.init_adapter,
        "stage2_mode": args.stage2_mode, "format": args.format, "precision": args.precision, "epochs": args.epochs,
        "max_steps": args.max_steps, "learning_rate": args.learning_rate, "batch_size": args.batch_size,
        "grad_accum": args.grad_accum, "max_seq_length": args.max_seq_length, "seed": args.seed,
        "save_steps": args.save_steps, "limit": args.limit,
        "lora_r": args.lora_r, "lora_alpha": args.lora_alpha, "lora_dropout": args.lora_dropout,
    }
    try:
        return load_train_config(args.config, args.stage, overrides)
    except TrainingError as exc:
        raise DentbenchError(str(exc)) from None


def merge_cached(base_source: str, adapter: Path, out: Path, models_dir: Path, store: Any) -> Path:
    """Base + adapter merged in 16-bit into `out`, redone only when the adapter's identity changed."""
    from .trainplan import adapter_identity, resolve_base

    base_folder, base_identity = resolve_base(base_source, models_dir, store)
    identity = adapter_identity(adapter, base_source, models_dir, store)
    if _merge_is_current(out, identity):
        print(f"{out} is up to date", file=sys.stderr)
        return out
    from training.export import merge_adapter

    print(f"merging {adapter} into {base_source} (16-bit) -> {out}", file=sys.stderr, flush=True)
    return merge_adapter(base_folder, adapter, out, record=_merge_record(base_source, base_identity, adapter, identity))


def merged_stage1_base(config: Any, models_dir: Path, store: Any) -> tuple[Path, str, str]:
    """Stage 2 'merged': base + stage 1 merged in 16-bit, cached by the adapter's identity."""
    from .specs import folder_identity
    from .trainplan import adapter_identity

    init = Path(config.init_adapter).expanduser().resolve()
    out = models_dir / f"merged-{adapter_identity(init, config.base, models_dir, store)[:16]}"
    merge_cached(config.base, init, out, models_dir, store)
    return out, str(out), folder_identity(out, store)


def _merge_is_current(out: Path, adapter_id: str) -> bool:
    try:
        return json.loads((out / "merge.json").read_text()).get("adapter_identity") == adapter_id
    except (OSError, json.JSONDecodeError):
        return False


def _merge_record(base_source: str, base_identity: str, adapter: Path, adapter_id: str) -> dict[str, Any]:
    record: dict[str, Any] = {"base_source": base_source, "base_identity": base_identity, "adapter": str(adapter),
                              "adapter_identity": adapter_id}
    training = adapter / "training.json"
    if training.is_file():
        info = json.loads(training.read_text())
        record["format"] = info.get("hyperparameters", {}).get("format")
        record["adapter_training"] = {k: v for k, v in info.items() if k != "loss_curve"}
    return record


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import TrainingError

    from .store import Store
    from .trainplan import build_plan, recorded_plan_hash

    config = _train_config(args)
    models_dir = Path(args.output_dir).resolve() / "models"
    with Store(Path(args.output_dir) / "dentbench.sqlite") as store:
        override = None
        if config.stage == "stage2" and config.stage2_mode == "merged":
            build_plan(config, models_dir, store)  # validate data and the stage 1 adapter before merging
            override = merged_stage1_base(config, models_dir, store)
        plan = build_plan(config, models_dir, store, override)
    from training.engine import latest_checkpoint, publish, train, work_dir

    if plan.output.exists() and not args.force:
        if recorded_plan_hash(plan.output) == plan.plan_hash:
            print(f"{plan.output}: up to date (same base, data and settings); --force retrains")
            return 0
        raise DentbenchError(f"{plan.output} already exists and was trained from other inputs; pass --force to replace it")
    work = work_dir(plan.output)
    if work.exists() and not (args.resume or args.force):
        step = latest_checkpoint(work / "checkpoints")
        raise DentbenchError(f"an unfinished run left {work} ({step.name if step else 'no complete checkpoint'}); "
                             "pass --resume to continue it or --force to start over")
    print(f"training {config.stage} on {len(plan.examples)} examples from {config.data} -> {plan.output}", file=sys.stderr)
    try:
        staging = train(plan, resume=args.resume, progress=not args.no_progress)
    except TrainingError as exc:
        raise DentbenchError(str(exc)) from None
    record = json.loads((staging / "training.json").read_text())
    _write_loss_plot(staging, record)
    publish(staging, plan.output)
    print(f"adapter: {plan.output}  steps {record['global_step']}  final loss {record['final_loss']}  "
          f"{record['tokens_seen']:,} tokens in {record['wall_seconds']:.0f} s")
    return 0


def _write_loss_plot(folder: Path, record: dict[str, Any]) -> None:
    from reports.render import render_loss_svg

    curve = record.get("loss_curve") or []
    if len(curve) >= 2:
        (folder / "loss.svg").write_text(render_loss_svg(curve, f"{record['stage']} training loss"), encoding="utf-8")


def cmd_export(args: argparse.Namespace) -> int:
    from training.config import TrainingError
    from training.export import convert_gguf, find_converter, merge_adapter, ollama_modelfile

    from .fileio import atomic_write_text
    from .specs import parse_source, resolve_weights
    from .store import Store
    from .trainplan import adapter_identity, check_fits

    if not (args.merged or args.ollama or args.gguf):
        raise DentbenchError("export: name at least one of --merged OUT, --ollama OUT, --gguf FILE")
    converter = find_converter(args.llama_cpp) if args.gguf else None
    if args.gguf and converter is None:
        raise DentbenchError("export: --gguf needs llama.cpp's convert_hf_to_gguf.py (clone llama.cpp and pass "
                             "--llama-cpp DIR or set LLAMA_CPP_DIR); --merged writes the safetensors it converts")
    adapter = Path(args.adapter).expanduser().resolve()
    spec = parse_source("adapter", str(adapter), base=args.base, setting="export: --adapter")
    if spec.kind != "adapter" or spec.base is None:
        raise DentbenchError(f"export: {adapter} is not a LoRA adapter folder (no adapter_config.json)")
    models_dir = Path(args.output_dir).resolve() / "models"
    base_folder = resolve_weights(spec.base, models_dir)
    check_fits(adapter, base_folder, spec.base.source)
    with Store(Path(args.output_dir) / "dentbench.sqlite") as store:
        from .specs import folder_identity

        record = _merge_record(spec.base.source, folder_identity(base_folder, store), adapter,
                               adapter_identity(adapter, spec.base.source, models_dir, store))
    fmt = record.get("format") or "instruction"
    targets = [Path(p).expanduser().resolve() for p in (args.merged, args.ollama) if p]
    try:
        first = merge_adapter(base_folder, adapter, targets[0] if targets else models_dir / f"merged-{record['adapter_identity'][:16]}",
                              dtype=args.dtype, record=record)
        print(f"merged: {first}")
        if args.ollama:
            ollama = Path(args.ollama).expanduser().resolve()
            if ollama != first:
                merge_adapter(base_folder, adapter, ollama, dtype=args.dtype, record=record)
            from transformers import AutoTokenizer

            eos = AutoTokenizer.from_pretrained(ollama).eos_token
            weights = "."
            if args.gguf:
                weights = f"./{Path(args.gguf).name}" if Path(args.gguf).resolve().parent == ollama else str(Path(args.gguf).resolve())
            atomic_write_text(ollama / "Modelfile", ollama_modelfile(weights, fmt, eos))
            print(f"ollama: {ollama / 'Modelfile'}  (ollama create NAME -f {ollama / 'Modelfile'})")
        if args.gguf:
            assert converter is not None
            print(f"gguf: {convert_gguf(converter, first, Path(args.gguf).expanduser().resolve())}")
    except TrainingError as exc:
        raise DentbenchError(str(exc)) from None
    return 0
