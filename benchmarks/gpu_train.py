"""QLoRA training speed and memory: our path (training.engine, Unsloth) vs plain HF + PEFT + TRL.

Run on the GPU machine (wheelhouse from ../shared/gpu/):
    python benchmarks/gpu_train.py --work /tmp/gt --out $OUT
On CPU, `--tiny` checks the script end to end on a 2-layer model.

Same settings for both engines (issue 4): a Mistral-7B-architecture model with random bf16
weights built here and loaded in nf4, LoRA r=16 on all linear layers, batch 4 x 1024 tokens,
gradient checkpointing, adamw_8bit, lr 2e-4. Each engine runs in its own process (Unsloth
patches transformers globally). Tokens are counted from what the trainer actually processed
(TRL's num_tokens), step times are synchronised wall time, steady state is the median after
the warm-up steps (Unsloth compiles on its first steps).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
SEQ, BATCH, R = 1024, 4, 16


def build(work: Path, tiny: bool) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    from gpu_model import build_tokenizer, mistral_config

    folder = work / ("tiny-model" if tiny else "model")
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    config = mistral_config(tiny)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    build_tokenizer(folder, config.vocab_size)
    del model
    return folder


def make_data(folder: Path, out: Path, rows: int) -> Path:
    """Rows of the seed format whose prompt + response pass SEQ tokens (truncated to SEQ)."""
    from transformers import AutoTokenizer

    from training.formats import seed_row

    tok = AutoTokenizer.from_pretrained(folder)
    answers = [json.loads(line)["response"] for line in (REPO / "data" / "stage2_implantation_data.jsonl").read_text().splitlines()]
    questions = [json.loads(line)["question"] for line in (REPO / "prompts" / "dental_implant_v1.jsonl").read_text().splitlines()]
    lines = []
    for i in range(rows):
        parts, k = [], i
        while len(tok(" ".join(parts))["input_ids"]) < SEQ + 16:
            parts.append(answers[k % len(answers)])
            k += 7
        lines.append(json.dumps(seed_row(questions[i % len(questions)], " ".join(parts))))
    out.write_text("\n".join(lines) + "\n")
    return out


def step_timer(times: list[float], tokens: list[float]):
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if logs and "num_tokens" in logs:
                tokens.append(float(logs["num_tokens"]))

    return StepTimer()


CHECKPOINTING = {"ours": True, "ours-plain": "plain", "ours-off": False}


def run_ours(folder: Path, data: Path, steps: int, work: Path, checkpointing: bool | str = True) -> dict[str, Any]:
    importlib.import_module("unsloth")  # before transformers/trl/peft: Unsloth patches them on import
    import torch

    from training.config import LoraSettings, TrainConfig
    from training.engine import Example, TrainPlan, train

    config = TrainConfig(stage="stage1", base=str(folder), data=str(data), output=str(work / "ours"), max_steps=steps,
                         batch_size=BATCH, grad_accum=1, max_seq_length=SEQ, warmup_steps=2, save_steps=10_000,
                         lora=LoraSettings(r=R, alpha=R), optim="adamw_8bit", gradient_checkpointing=checkpointing)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    plan = TrainPlan(config=config, base_folder=folder, base_source=str(folder), base_identity="bench",
                     examples=tuple(Example(r["prompt"], r["response"], f"{data}:{i}") for i, r in enumerate(rows, 1)),
                     data_files=(), output=work / "ours", plan_hash="bench")
    times: list[float] = []
    tokens: list[float] = []
    torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
    staging = train(plan, progress=False, callbacks=(step_timer(times, tokens),))
    record = json.loads((staging / "training.json").read_text())
    return {"times": times, "tokens": tokens, "effective": record["effective"], "first_example": record["first_example"]}


def run_hf(folder: Path, data: Path, steps: int, work: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    on_gpu = torch.cuda.is_available()
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant, dtype=torch.bfloat16,
                                                 device_map="cuda" if on_gpu else "cpu")
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model = get_peft_model(model, LoraConfig(r=R, lora_alpha=R, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    tok = AutoTokenizer.from_pretrained(folder)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": tok.bos_token + r["prompt"], "completion": "\n" + r["response"]} for r in rows])
    args = SFTConfig(output_dir=str(work / "hf"), per_device_train_batch_size=BATCH, gradient_accumulation_steps=1,
                     max_steps=steps, learning_rate=2e-4, warmup_steps=2, optim="adamw_8bit" if on_gpu else "adamw_torch",
                     bf16=on_gpu, logging_steps=1, save_strategy="no", report_to="none", max_length=SEQ,
                     gradient_checkpointing=True, disable_tqdm=True, dataset_num_proc=1)
    times: list[float] = []
    tokens: list[float] = []
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    SFTTrainer(model=model, processing_class=tok, train_dataset=dataset, args=args,
               callbacks=[step_timer(times, tokens)]).train()
    return {"times": times, "tokens": tokens}


def summarise(raw: dict[str, Any], warmup: int) -> dict[str, Any]:
    import torch

    deltas = [b - a for a, b in zip([0.0, *raw["tokens"]], raw["tokens"])]
    counted = "trainer's num_tokens"
    if len(deltas) < len(raw["times"]):
        # Unsloth's GPU trainer logs no num_tokens. Every example is longer than SEQ and is cut
        # to SEQ (make_data), so a step processes batch x accumulation x SEQ tokens exactly.
        effective = raw.get("effective", {})
        deltas = [float(effective.get("batch_size", BATCH) * effective.get("grad_accum", 1) * SEQ)] * len(raw["times"])
        counted = "batch x grad_accum x 1024 (every example is truncated to 1024)"
    steady = list(zip(raw["times"], deltas))[warmup:]
    per_step = statistics.median(t for t, _ in steady)
    tokens_per_step = statistics.median(n for _, n in steady)
    out = {"steps": len(raw["times"]), "warmup_steps": warmup, "first_step_s": round(raw["times"][0], 2),
           "median_step_s": round(per_step, 4), "tokens_per_step": tokens_per_step,
           "tokens_per_s": round(tokens_per_step / per_step, 1), "tokens_counted_as": counted}
    if torch.cuda.is_available():
        out["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    return {**out, **{k: v for k, v in raw.items() if k not in ("times", "tokens")}, "step_times": raw["times"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_train"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--engines", default="ours,hf", help="comma list of ours, ours-plain, ours-off, hf")
    parser.add_argument("--engine", choices=[*CHECKPOINTING, "hf"], help=argparse.SUPPRESS)  # the child processes
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    if args.engine:
        folder, data = args.work / ("tiny-model" if args.tiny else "model"), args.work / "data.jsonl"
        if args.engine == "hf":
            raw = run_hf(folder, data, args.steps, args.work)
        else:
            raw = run_ours(folder, data, args.steps, args.work, CHECKPOINTING[args.engine])
        (args.work / f"{args.engine}.json").write_text(json.dumps(summarise(raw, args.warmup), indent=2))
        return
    started = time.time()
    folder = build(args.work, args.tiny)
    make_data(folder, args.work / "data.jsonl", rows=BATCH * args.steps)
    print(f"model and data ready in {time.time() - started:.0f} s", flush=True)
    results: dict[str, Any] = {}
    for engine in args.engines.split(","):
        command = [sys.executable, __file__, "--engine", engine, "--work", str(args.work), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), *(["--tiny"] if args.tiny else [])]
        code = subprocess.run(command).returncode
        results[engine] = json.loads((args.work / f"{engine}.json").read_text()) if code == 0 else {"failed": code}
    hf = results.get("hf", {"failed": "not run"})
    lines = ["engine      tokens/s  median step s  tokens/step  first step s  peak alloc GiB  peak reserved GiB"]
    for name, r in results.items():
        if "failed" in r:
            lines.append(f"{name:<11} failed (exit {r['failed']})")
        else:
            lines.append(f"{name:<11} {r['tokens_per_s']:>8} {r['median_step_s']:>14} {r['tokens_per_step']:>12} "
                         f"{r['first_step_s']:>13} {r.get('peak_allocated_gib', '-'):>15} {r.get('peak_reserved_gib', '-'):>18}")
    if "failed" not in hf:
        for name, r in results.items():
            if name == "hf" or "failed" in r:
                continue
            r["speedup"] = round(r["tokens_per_s"] / hf["tokens_per_s"], 2)
            r["memory_ratio"] = round(r.get("peak_allocated_gib", 0) / hf.get("peak_allocated_gib", 1), 2)
            lines.append(f"{name} / hf: {r['speedup']}x tokens/s, {r['memory_ratio']}x peak memory (targets: >= 2x, <= 0.6x)")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_train.json").write_text(json.dumps(results, indent=2))
        (args.out / "gpu_train.txt").write_text(table + "\n")


if __name__ == "__main__":
    main()
