"""LoRA training with Unsloth: one stage per call, checkpointed, with a provenance record.

Unsloth is imported here and nowhere else: its patches to transformers must never touch the
benchmark's generation, so the CLI runs training in its own process.  The caller (the CLI) has
already resolved the base to a local folder, read and validated the data and computed
identities: this module takes plain records and paths (nanoGPT-style: one job, one file).
"""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import TrainConfig, TrainingError
from .formats import INSTRUCTION_TEMPLATE

TRAINING_RECORD = "training.json"
RECORD_VERSION = 1
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_QUESTION = re.compile(r"^### Instruction:\n(?P<q>.*)\n\n### Response:\s*$", re.S)
RESPONSE_SEPARATOR = "\n"  # the seed prompt ends with "### Response:"; the answer starts on the next line


@dataclass(frozen=True)
class Example:
    prompt: str  # the seed's "### Instruction:\n...\n\n### Response:" text
    response: str
    origin: str  # file:line, for error messages


@dataclass(frozen=True)
class TrainPlan:
    config: TrainConfig
    base_folder: Path  # absolute local folder with the base weights
    base_source: str  # what the benchmark loads as this adapter's base (hub id, folder, embedded:NAME)
    base_identity: str
    examples: tuple[Example, ...]
    data_files: tuple[dict[str, Any], ...]  # [{"path", "sha256", "rows"}]
    output: Path
    plan_hash: str  # same plan, same hash: the demo skips a stage whose adapter already has it
    init_adapter: Path | None = None
    init_adapter_identity: str | None = None


def work_dir(output: Path) -> Path:
    """Checkpoints and staging live beside the output, so the final rename stays on one disk."""
    return output.parent / f".{output.name}.work"


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint: trainer_state.json is written last, so a checkpoint
    without it was cut short by a kill and is skipped."""
    found = []
    if folder.is_dir():
        for child in folder.iterdir():
            match = CHECKPOINT.match(child.name)
            if match and (child / "trainer_state.json").is_file():
                found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def _question(prompt: str) -> str:
    match = _QUESTION.match(prompt)
    return match.group("q") if match else prompt


def build_rows(examples: tuple[Example, ...], tokenizer: Any, fmt: str) -> list[dict[str, Any]]:
    """TRL prompt-completion rows; loss falls on the completion only, EOS is appended by TRL.

    The instruction text matches benchmark.generate.render_prompt exactly (one BOS, then the
    seed template), so the model is trained on the context it is tested on."""
    if fmt == "chat_template":
        if not getattr(tokenizer, "chat_template", None):
            raise TrainingError("format: this tokenizer has no chat template; use format = \"instruction\"")
        return [{"prompt": [{"role": "user", "content": _question(e.prompt)}],
                 "completion": [{"role": "assistant", "content": e.response}]} for e in examples]
    adds_bos = bool(tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id])
    prefix = "" if adds_bos or tokenizer.bos_token is None else tokenizer.bos_token
    return [{"prompt": prefix + e.prompt, "completion": RESPONSE_SEPARATOR + e.response} for e in examples]


def check_first_example(row: dict[str, Any], tokenizer: Any) -> dict[str, int]:
    """Guard the two silent failures of SFT data: loss on the prompt, and a missing or doubled
    BOS/EOS. Raises if the tokenised example is not what we meant to train on."""
    ids, labels = list(row["input_ids"]), list(row.get("labels") or [])
    if not labels and "completion_mask" in row:
        labels = [t if m else -100 for t, m in zip(ids, row["completion_mask"])]
    masked = sum(1 for x in labels if x == -100)
    if not labels or masked == 0:
        raise TrainingError("the tokenised training data puts loss on the prompt too (no masked tokens); "
                            "this trl/unsloth combination is not supported")
    if masked == len(labels):
        raise TrainingError("the first training example has no response tokens left (max_seq_length too small?)")
    bos = tokenizer.bos_token_id
    if bos is not None and bos != tokenizer.eos_token_id and ids[:2] == [bos, bos]:
        raise TrainingError("the tokenised training text starts with two BOS tokens; the benchmark renders one")
    return {"prompt_tokens_masked": masked, "tokens": len(ids), "ends_with_eos": int(ids[-1] == tokenizer.eos_token_id)}


def _lora_grad_callback(record: dict[str, Any]):
    """Measure the gradient reaching the LoRA weights at the first optimiser step.

    A stage 1 adapter loaded without is_trainable=True is frozen: training "runs", the loss
    moves a little through nothing, and stage 2 silently equals stage 1. Zero gradient stops it."""
    from transformers import TrainerCallback

    class LoraGradient(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
            if "first_step_lora_grad_norm" in record or model is None:
                return
            total, count = 0.0, 0
            for name, param in model.named_parameters():
                if "lora_" in name and param.requires_grad and param.grad is not None:
                    total += float(param.grad.detach().float().pow(2).sum())
                    count += 1
            record["first_step_lora_grad_norm"] = total ** 0.5
            record["lora_tensors_with_grad"] = count
            if count == 0 or total == 0.0:
                raise TrainingError("no gradient reaches the LoRA weights (a frozen adapter?); training stopped")

    return LoraGradient()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("unsloth", "unsloth_zoo", "trl", "transformers", "peft", "torch", "bitsandbytes", "datasets", "accelerate"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _load(plan: TrainPlan, on_gpu: bool) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel  # noqa: I001  (imported first: it patches transformers)

    cfg = plan.config
    model, tokenizer = FastLanguageModel.from_pretrained(
        str(plan.base_folder), max_seq_length=cfg.max_seq_length, dtype=None,
        load_in_4bit=cfg.precision == "4bit", use_exact_model_name=True, local_files_only=True,
    )
    mode = "unsloth" if cfg.gradient_checkpointing is True else cfg.gradient_checkpointing
    # Unsloth's offloading needs CUDA; on a CPU both modes are plain recomputation
    checkpointing: bool | str = False if mode is False else ("unsloth" if on_gpu and mode == "unsloth" else True)
    if plan.init_adapter is not None and cfg.stage2_mode == "continue":
        from peft import PeftModel

        # is_trainable=True is the whole point: the default loads the adapter frozen
        model = PeftModel.from_pretrained(model, str(plan.init_adapter), is_trainable=True)
        if checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
    else:
        lora = cfg.lora
        model = FastLanguageModel.get_peft_model(
            model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules), bias="none",
            use_gradient_checkpointing=checkpointing, random_state=cfg.seed,
        )
    trainable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n)
    if trainable == 0:
        raise TrainingError(f"{plan.init_adapter or 'adapter'}: no trainable LoRA parameters after loading")
    return model, tokenizer


def train(plan: TrainPlan, *, resume: bool = False, progress: bool = True, callbacks: tuple[Any, ...] = ()) -> Path:
    """Train one stage; return the staging folder (adapter, tokenizer, training.json).

    The caller adds any files it wants (the loss plot) and then calls publish().
    callbacks: extra transformers TrainerCallbacks (the GPU benchmark's step timer)."""
    importlib.import_module("unsloth")  # before transformers/trl/peft: Unsloth patches them on import
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cfg = plan.config
    work = work_dir(plan.output)
    checkpoints = work / "checkpoints"
    resume_from = latest_checkpoint(checkpoints) if resume else None
    if resume and resume_from is None:
        print(f"dentbench: no complete checkpoint in {checkpoints}; starting from step 0", file=sys.stderr)
    if not resume and work.exists():
        shutil.rmtree(work)
    checkpoints.mkdir(parents=True, exist_ok=True)

    on_gpu = torch.cuda.is_available()
    started = time.time()
    model, tokenizer = _load(plan, on_gpu)
    optim = cfg.optim if on_gpu or "8bit" not in cfg.optim else "adamw_torch"
    bf16 = bool(on_gpu and torch.cuda.is_bf16_supported())
    dataset = Dataset.from_list(build_rows(plan.examples, tokenizer, cfg.format))
    args = SFTConfig(
        output_dir=str(checkpoints), per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay, optim=optim, seed=cfg.seed, data_seed=cfg.seed,
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, bf16=bf16, fp16=False, report_to="none",
        max_length=cfg.max_seq_length, packing=False, dataset_num_proc=1, disable_tqdm=not progress,
        completion_only_loss=True,
    )
    record: dict[str, Any] = {}
    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=dataset, args=args,
                         callbacks=[_lora_grad_callback(record), *callbacks])
    first = check_first_example(trainer.train_dataset[0], tokenizer)
    load_seconds = time.time() - started
    # read now: checkpoint rotation (save_total_limit) may delete this checkpoint during training
    previous = _previous_curve(resume_from) if resume_from else []
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    staging = work / "final"
    if staging.exists():
        shutil.rmtree(staging)
    peft_model = trainer.model
    peft_model.peft_config["default"].base_model_name_or_path = _portable_base(plan)
    peft_model.save_pretrained(str(staging), safe_serialization=True)
    tokenizer.save_pretrained(str(staging))
    history = trainer.state.log_history
    losses = [{"step": h["step"], "loss": round(float(h["loss"]), 5)} for h in history if "loss" in h]
    tokens = max((float(h.get("num_tokens", 0)) for h in history), default=0.0)
    resumed_step = int(CHECKPOINT.match(resume_from.name).group(1)) if resume_from else 0
    record.update({
        "record_version": RECORD_VERSION,
        "stage": cfg.stage,
        "base_source": plan.base_source,
        "base_identity": plan.base_identity,
        "init_adapter": str(plan.init_adapter) if plan.init_adapter else None,
        "init_adapter_identity": plan.init_adapter_identity,
        "stage2_mode": cfg.stage2_mode if cfg.stage == "stage2" else None,
        "data_files": list(plan.data_files),
        "examples": len(plan.examples),
        "hyperparameters": cfg.to_dict(),
        "effective": {"optim": optim, "bf16": bf16, "device": "cuda" if on_gpu else "cpu",
                      "gradient_checkpointing": _checkpointing_mode(cfg.gradient_checkpointing, on_gpu),
                      "batch_size": args.per_device_train_batch_size,
                      "grad_accum": args.gradient_accumulation_steps},  # Unsloth may change these: record what ran
        "first_example": first,
        "plan_hash": plan.plan_hash,
        "global_step": trainer.state.global_step,
        "epochs_done": round(float(trainer.state.epoch or 0), 4),
        "resumed_from_step": resumed_step,
        "tokens_seen": int(tokens),
        "load_seconds": round(load_seconds, 2),
        "wall_seconds": round(time.time() - started, 2),
        "final_loss": losses[-1]["loss"] if losses else None,
        "loss_curve": _merge_curves(previous, losses),
        "packages": _versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    (staging / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return staging


def _checkpointing_mode(setting: bool | str, on_gpu: bool) -> str:
    if setting is False:
        return "off"
    return "unsloth (offloaded)" if on_gpu and setting in (True, "unsloth") else "plain"


def _portable_base(plan: TrainPlan) -> str:
    # PEFT users load the adapter by this name: a hub id travels, a local path does not
    src = plan.base_source
    return src if not src.startswith("embedded:") else str(plan.base_folder)


def _previous_curve(checkpoint: Path) -> list[dict[str, Any]]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return [{"step": h["step"], "loss": round(float(h["loss"]), 5)} for h in state.get("log_history", []) if "loss" in h]


def _merge_curves(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_step = {p["step"]: p for p in before}
    by_step.update({p["step"]: p for p in after})
    return [by_step[s] for s in sorted(by_step)]


def publish(staging: Path, output: Path) -> Path:
    """Move the finished adapter into place in one rename; drop the checkpoints."""
    output.parent.mkdir(parents=True, exist_ok=True)
    work = staging.parent
    if output.exists():
        old = work / "replaced"
        os.replace(output, old)
    os.replace(staging, output)
    shutil.rmtree(work, ignore_errors=True)
    return output


__all__ = ["Example", "TrainPlan", "train", "publish", "work_dir", "latest_checkpoint", "INSTRUCTION_TEMPLATE"]
