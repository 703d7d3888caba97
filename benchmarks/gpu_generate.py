"""GPU generation benchmark (issue 8): the naive way, plain HF batched generate and the harness, in one run.

On the GPU machine it builds a Mistral-7B-architecture model (MistralConfig of Mistral-7B-v0.1,
random bf16 weights made on the GPU, saved as safetensors), a byte-level BPE tokenizer trained on
the project's own text (32,000 ids, Mistral's <unk>/<s>/</s> at 0/1/2, a Mistral-style chat
template) and two LoRA adapters (r=16, all linear layers, non-zero B). The harness loads it the
way a run does (`load_base(..., "4bit")`, nf4 + double quant, bf16 compute; `attach_adapter`).
Three contestants share the base: the base itself and the two adapters. 96 prompts of 40-400
tokens (log-uniform), 256 new tokens, greedy.

Variants (run in the order given by --variants; each one's figures are written to OUT as soon as
it ends; a sampled variant's tokens/s is measured on its sample):
  harness     generate_rows, engine "generate": padded batches through model.generate, all three
              contestants mixed in each batch (PEFT adapter_names), batches sized by the GPU memory
              budget; all 288 rows
  harness_sep the same, one adapter per batch (--sep-contestants, default all)
  harness_cb  generate_rows, engine "continuous": transformers' continuous batching (paged KV
              cache, CUDA graphs), one generate_batch call per contestant; all 288 rows
  hf_batched  plain HF+PEFT generate per contestant, batch 64, prompts in file order (--hf-prompts,
              --hf-contestants)
  naive       each contestant alone, one prompt at a time (a sample; loads counted from the
              measured load time)
  harness_old the harness before issue 8: one adapter per batch, batch 16 (a sample: 16
              length-spread prompts of adapter a, by default)
  static      the "harness" variant with a static KV cache
  probe       like-for-like: one mixed batch through the harness against plain HF on the very same
              padded batch with each row's adapter set for the whole batch; plain HF run twice
              (is the GPU run-to-run deterministic?)
  sweep       decode-step time against batch size (base / one adapter / mixed), from
              generate(17 tokens) - generate(1 token) after a warm-up; profile: GPU kernel time
At the end, greedy consistency: for a sample of each variant's rows, one teacher-forced forward
pass (batch 1, no padding, the row's adapter) over prompt + answer; the share of answer tokens
that are that pass's argmax, and how far below the max the others are (near-ties, in units of
the median top-1/top-2 logit gap). With random weights greedy decoding is chaotic: any change of
batch shape, padding or attention kernel flips near-ties and the continuations part, so exact
answer matches across different batches are rare; this check says whether each answer is a
greedy decode of its own contestant up to bf16 near-ties.

Figures: new tokens/s, ratios to naive and to plain HF batched, % of the floor (4-bit weights
plus the KV cache read once per step at the measured copy bandwidth; prefill at the measured
bf16 matmul rate), peak GPU memory (max_memory_allocated, reset per variant), and greedy answer
match rates. A sampled variant's tokens/s is measured on its sample.

    python3 benchmarks/gpu_generate.py [--tiny] [--out DIR] [--variants sweep,harness,...]

The GPU image lacks bitsandbytes and json_repair (imported by the benchmark package): carry their
wheels (bitsandbytes==0.50.2 trimmed to its cuda130 library, json_repair==0.64.6; about 3.6 MB),
install them with `pip install --no-index --no-deps --target /tmp/site` and put /tmp/site and the
repository on PYTHONPATH. All variants with the defaults take about 15 minutes on an H100; split
them over calls with --variants (each call rebuilds the model: about 45 s) or shrink the samples.

`--tiny` (2 layers, hidden 256) runs the same code on CPU in a minute or two: a dry run.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from benchmark.generate import (  # noqa: E402
    GenerationRow, active_adapter, decode_answer, generate_batch, generate_rows, plan_batches, render_prompt,
    stop_token_ids,
)
from benchmark.loading import BASE_ADAPTER, attach_adapter, load_base  # noqa: E402
from benchmark.records import GenerationConfig  # noqa: E402
from gpu_model import build_tokenizer, mistral_config  # noqa: E402  (shared with gpu_train.py)

CONTESTANTS = (None, "a", "b")  # the base itself, adapter a, adapter b
ALL_VARIANTS = "harness_cb,probe,naive,hf_batched,harness_sep,harness_old,sweep,harness,static"


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def gib(n: float) -> float:
    return round(n / (1 << 30), 2)


def reset_peak() -> None:
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak() -> dict[str, float]:
    if not torch.cuda.is_available():
        return {"peak_gib": 0.0, "reserved_gib": 0.0}
    return {"peak_gib": gib(torch.cuda.max_memory_allocated()), "reserved_gib": gib(torch.cuda.max_memory_reserved())}


# ---------------------------------------------------------------- model, tokenizer, adapters, prompts


def build_model(folder: Path, adapters: list[Path], tiny: bool, device: str, lora_scale: float) -> dict[str, Any]:
    """Random bf16 weights made on the device, saved; two LoRA adapters made on the same weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = mistral_config(tiny)
    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    n_params = model.num_parameters()
    sync()
    made = time.perf_counter()
    model.save_pretrained(folder)
    saved = time.perf_counter()
    build_tokenizer(folder, config.vocab_size)
    for seed, out in zip((1, 2), adapters):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                      init_lora_weights=False))
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.mul_(lora_scale)  # non-zero B (PEFT's default is zero: a no-op adapter)
        peft_model.save_pretrained(out)
        model = peft_model.unload()
    del model, peft_model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"n_params": n_params, "make_s": round(made - start, 1), "save_s": round(saved - made, 1),
            "folder_gb": round(sum(f.stat().st_size for f in folder.iterdir()) / 1e9, 2)}


def make_prompts(tokenizer: Any, n: int, gen: GenerationConfig, low: int, high: int) -> list[str]:
    """n rendered prompts, lengths log-uniform in [low, high] tokens: a question plus case notes."""
    from benchmark.prompts import load_prompt_set

    items = load_prompt_set(REPO / "prompts" / "dental_implant_v1.jsonl").items
    pool = " ".join(item.reference for item in items).split()
    rng = random.Random(8)
    prompts = []
    for i in range(n):
        target = int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
        question, offset = items[i % len(items)].question, rng.randrange(len(pool) - 2000)
        text, words = question, 0
        while len(tokenizer(render_prompt(tokenizer, text, gen), add_special_tokens=False)["input_ids"]) < target:
            words += 6
            text = f"Case notes: {' '.join(pool[offset:offset + words])}\n\nQuestion: {question}"
        prompts.append(render_prompt(tokenizer, text, gen))
    return prompts


# ---------------------------------------------------------------- measuring


class Floor:
    """Fewest seconds a generate call can take: every decode step reads the weights and the KV cache
    once at the measured copy bandwidth; prefill is bounded by bytes or by bf16 matmul rate."""

    def __init__(self, weight_bytes: int, n_params: int, config: Any, bandwidth: float, flops: float):
        self.weight_bytes, self.n_params, self.bandwidth, self.flops = weight_bytes, n_params, bandwidth, flops
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.kv_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 2  # bf16 K and V

    def call(self, rows: int, prompt: int, new: int) -> float:
        prefill = max((self.weight_bytes + rows * prompt * self.kv_per_token) / self.bandwidth,
                      2 * self.n_params * rows * prompt / self.flops)
        kv_tokens = rows * sum(prompt + t for t in range(1, new))
        return prefill + ((new - 1) * self.weight_bytes + kv_tokens * self.kv_per_token) / self.bandwidth


def measure_device() -> dict[str, float]:
    if not torch.cuda.is_available():
        return {"bandwidth": 50e9, "flops": 1e12}
    buf = torch.empty(1 << 29, dtype=torch.float32, device="cuda")  # 2 GiB
    out = torch.empty_like(buf)
    for _ in range(3):
        out.copy_(buf)
    sync()
    start = time.perf_counter()
    for _ in range(20):
        out.copy_(buf)
    sync()
    bandwidth = 20 * 2 * buf.numel() * 4 / (time.perf_counter() - start)
    del buf, out
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    sync()
    flops = 10 * 2 * 8192**3 / (time.perf_counter() - start)
    del a, b
    torch.cuda.empty_cache()
    return {"bandwidth": bandwidth, "flops": flops}


def padded_len(tokenizer: Any, texts: list[str]) -> int:
    return max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def plain_generate(base: Any, adapter: str | None, texts: list[str], new: int,
                   **extra: Any) -> tuple[list[str], list[int], float, list[tuple[int, ...]]]:
    """Plain HF + PEFT: one generate call, left-padded, the adapter set for the whole batch."""
    tok, model = base.tokenizer, base.model
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(base.device)
    stops = stop_token_ids(base)
    sync()
    start = time.perf_counter()
    with torch.inference_mode(), active_adapter(base, adapter):
        out = model.generate(**enc, max_new_tokens=new, do_sample=False, pad_token_id=tok.pad_token_id,
                             eos_token_id=sorted(stops), **extra)
    sync()
    seconds = time.perf_counter() - start
    new_ids = out[:, enc["input_ids"].shape[1]:].tolist()
    decoded = [decode_answer(tok, ids, stops) for ids in new_ids]
    return [d[0] for d in decoded], [d[1] for d in decoded], seconds, [tuple(i[:d[1]]) for i, d in zip(new_ids, decoded)]


def match(a: dict[str, str], b: dict[str, str]) -> dict[str, Any]:
    keys = sorted(set(a) & set(b))
    if not keys:
        return {"rows": 0}
    same = sum(a[k] == b[k] for k in keys)
    prefix = []
    for k in keys:
        x, y = a[k], b[k]
        n = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
        prefix.append(n / max(len(x), len(y), 1))
    return {"rows": len(keys), "exact": same, "exact_rate": round(same / len(keys), 3),
            "mean_common_prefix": round(sum(prefix) / len(prefix), 3)}


def key(contestant: str | None, i: int) -> str:
    return f"{contestant or BASE_ADAPTER}-{i}"


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="2 layers, hidden 256: a CPU dry run")
    parser.add_argument("--out", default=os.environ.get("OUT", str(REPO / "benchmarks" / "results" / "scratch")))
    parser.add_argument("--work", default=None, help="where the model is saved (default /dev/shm if roomy, else /tmp)")
    parser.add_argument("--variants", default=ALL_VARIANTS)
    parser.add_argument("--n-prompts", type=int, default=96)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--min-len", type=int, default=40)
    parser.add_argument("--max-len", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=288, help="the harness's batch_size cap (memory decides below it)")
    parser.add_argument("--hf-batch", type=int, default=64)
    parser.add_argument("--hf-prompts", type=int, default=64, help="prompts per contestant for plain HF batched")
    parser.add_argument("--hf-contestants", default="base,a,b")
    parser.add_argument("--sep-contestants", default="base,a,b")
    parser.add_argument("--consistency-rows", type=int, default=6, help="rows per variant for the greedy check")
    parser.add_argument("--naive-prompts", type=int, default=1, help="prompts per contestant for the naive sample")
    parser.add_argument("--old-prompts", type=int, default=16, help="prompts for harness_old")
    parser.add_argument("--old-contestants", default="a", help="contestants for harness_old (base,a,b)")
    parser.add_argument("--old-batch", type=int, default=16)
    parser.add_argument("--probe-prompts", type=int, default=8)
    parser.add_argument("--probe-tokens", type=int, default=64)
    parser.add_argument("--sweep-batches", default="1,16,64,128,256")
    parser.add_argument("--lora-scale", type=float, default=0.1)
    parser.add_argument("--deadline", type=float, default=480, help="seconds from start after which no variant starts")
    args = parser.parse_args()

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    variants = [v for v in args.variants.split(",") if v]
    if args.work:
        work = Path(args.work)
    elif Path("/dev/shm").is_dir() and shutil.disk_usage("/dev/shm").free > 40e9:
        work = Path("/dev/shm/dentbench-gpu")
    else:
        work = Path("/tmp/dentbench-gpu")
    shutil.rmtree(work, ignore_errors=True)
    folder, adapters = work / "mistral-7b-random", [work / "adapter_a", work / "adapter_b"]
    import bitsandbytes
    import peft
    import transformers

    transformers.utils.logging.disable_progress_bar()

    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                     "bitsandbytes": bitsandbytes.__version__, "python": platform.python_version()},
        "args": vars(args), "work": str(work), "variants": {}, "correctness": {},
    }

    def save() -> None:
        (out / "gpu_generate.json").write_text(json.dumps(report, indent=1, default=str))

    report["device_ceilings"] = measure_device()
    print(f"device {report['device']}: copy {report['device_ceilings']['bandwidth'] / 1e12:.2f} TB/s, "
          f"bf16 matmul {report['device_ceilings']['flops'] / 1e12:.0f} TFLOP/s", flush=True)
    report["build"] = build_model(folder, adapters, args.tiny, device, args.lora_scale)
    print(f"built {report['build']} at {time.perf_counter() - t0:.0f} s", flush=True)

    reset_peak()
    start = time.perf_counter()
    base = load_base(folder, "4bit")
    sync()
    load_s = time.perf_counter() - start
    attach_adapter(base, "a", adapters[0])
    attach_adapter(base, "b", adapters[1])
    weight_bytes = torch.cuda.memory_allocated() if device == "cuda" else 0
    report["load"] = {"load_s": round(load_s, 1), "weights_gib": gib(weight_bytes), **peak()}
    print(f"load_base 4bit: {load_s:.1f} s, weights+adapters {gib(weight_bytes)} GiB", flush=True)
    config = base.model.config
    floor = Floor(weight_bytes or 1, report["build"]["n_params"], config,
                  report["device_ceilings"]["bandwidth"], report["device_ceilings"]["flops"])

    gen = GenerationConfig(max_new_tokens=args.max_new_tokens)
    tok = base.tokenizer
    prompts = make_prompts(tok, args.n_prompts, gen, args.min_len, args.max_len)
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    by_length = sorted(range(len(prompts)), key=lambda i: lengths[i])
    report["prompts"] = {"n": len(prompts), "min": min(lengths), "median": sorted(lengths)[len(lengths) // 2],
                         "max": max(lengths), "mean": round(sum(lengths) / len(lengths), 1)}
    print(f"prompts: {report['prompts']}", flush=True)
    save()
    answers: dict[str, dict[str, str]] = {}
    answer_ids: dict[str, dict[str, tuple[str | None, str, tuple[int, ...]]]] = {}  # key -> (adapter, prompt, ids)

    def contestants(spec: str) -> list[str | None]:
        return [None if c == "base" else c for c in spec.split(",")]

    def record(name: str, fig: dict[str, Any]) -> None:
        if fig.get("seconds"):
            fig["tok_s"] = round(fig["tokens"] / fig["seconds"], 1)
        if fig.get("floor_s") and fig.get("seconds"):
            fig["pct_floor"] = round(100 * fig["floor_s"] / fig["seconds"], 2)
        report["variants"][name] = fig
        save()
        print(f"[{time.perf_counter() - t0:5.0f} s] {name}: "
              + ", ".join(f"{k} {v}" for k, v in fig.items() if not isinstance(v, (list, dict))), flush=True)

    def run_harness(name: str, rows: list[GenerationRow], batch_size: int, **kw: Any) -> None:
        budget = kw.pop("memory_bytes", "auto")
        kw.setdefault("engine", "generate")  # not DENTBENCH_GENERATION_ENGINE: each variant names its engine
        from benchmark.generate import batch_memory_budget

        resolved = batch_memory_budget(base) if budget == "auto" else budget
        plan = plan_batches(base, rows, batch_size, gen.max_new_tokens, resolved, kw.get("mix_adapters", False))
        got: dict[str, Any] = {}
        reset_peak()
        sync()
        start = time.perf_counter()
        generate_rows(base, rows, gen, batch_size, lambda batch: got.update({r.key: r for r in batch}),
                      description=name, memory_bytes=resolved, **kw)
        sync()
        seconds = time.perf_counter() - start
        fs = sum(floor.call(len(b), padded_len(tok, [r.prompt_text for r in b]), gen.max_new_tokens) for b in plan)
        answers[name] = {k: r.text for k, r in got.items()}
        answer_ids[name] = {r.key: (r.adapter, r.prompt_text, got[r.key].token_ids) for r in rows}
        if kw.get("engine") == "continuous":
            plan = [[r for r in rows if r.adapter == c] for c in CONTESTANTS]
            plan = [b for b in plan if b]
        record(name, {"rows": len(rows), "batches": [len(b) for b in plan],
                      "budget_gib": gib(resolved) if resolved else None,
                      "tokens": sum(r.new_tokens for r in got.values()), "seconds": round(seconds, 2),
                      "floor_s": round(fs, 2), **peak()})

    def all_rows(indices: list[int]) -> list[GenerationRow]:
        return [GenerationRow(key(c, i), c, prompts[i]) for c in CONTESTANTS for i in indices]

    for variant in variants:
        if time.perf_counter() - t0 > args.deadline:
            report.setdefault("skipped", []).append(variant)
            print(f"skipped {variant}: past the deadline", flush=True)
            continue
        try:
            if variant == "sweep":
                sweep(base, report, args, floor)
                save()
            elif variant == "harness":
                run_harness("harness", all_rows(list(range(len(prompts)))), args.batch_size, mix_adapters=True)
            elif variant == "harness_sep":
                rows = [r for r in all_rows(list(range(len(prompts)))) if r.adapter in contestants(args.sep_contestants)]
                run_harness("harness_sep", rows, args.batch_size)
            elif variant == "harness_cb":
                run_harness("harness_cb", all_rows(list(range(len(prompts)))), args.batch_size, engine="continuous")
            elif variant == "static":
                run_harness("static", all_rows(list(range(len(prompts)))), args.batch_size, mix_adapters=True,
                            generate_kwargs={"cache_implementation": "static"})
            elif variant == "harness_old":
                step = max(1, len(prompts) // args.old_prompts)
                sample = by_length[step // 2::step][: args.old_prompts]
                rows = [r for r in all_rows(sample) if r.adapter in contestants(args.old_contestants)]
                run_harness("harness_old", rows, args.old_batch, memory_bytes=None)
            elif variant == "hf_batched":
                got, ids_got, tokens, seconds, fs = {}, {}, 0, 0.0, 0.0
                reset_peak()
                idx = list(range(min(args.hf_prompts, len(prompts))))
                for c in contestants(args.hf_contestants):
                    for s in range(0, len(idx), args.hf_batch):
                        chunk = idx[s : s + args.hf_batch]
                        texts, counts, secs, ids = plain_generate(base, c, [prompts[i] for i in chunk], gen.max_new_tokens)
                        got.update({key(c, i): t for i, t in zip(chunk, texts)})
                        ids_got.update({key(c, i): (c, prompts[i], x) for i, x in zip(chunk, ids)})
                        tokens, seconds = tokens + sum(counts), seconds + secs
                        fs += floor.call(len(chunk), padded_len(tok, [prompts[i] for i in chunk]), gen.max_new_tokens)
                answers["hf_batched"], answer_ids["hf_batched"] = got, ids_got
                record("hf_batched", {"rows": len(got), "batch": args.hf_batch, "tokens": tokens,
                                      "seconds": round(seconds, 2), "floor_s": round(fs, 2), **peak()})
            elif variant == "naive":
                mid = len(by_length) // 2
                sample = by_length[mid - args.naive_prompts // 2 : mid - args.naive_prompts // 2 + args.naive_prompts]
                reset_peak()
                got, ids_got, tokens, seconds, fs = {}, {}, 0, 0.0, 0.0
                for c in CONTESTANTS:
                    for i in sample:
                        texts, counts, secs, ids = plain_generate(base, c, [prompts[i]], gen.max_new_tokens)
                        got[key(c, i)], ids_got[key(c, i)] = texts[0], (c, prompts[i], ids[0])
                        tokens, seconds = tokens + counts[0], seconds + secs
                        fs += floor.call(1, lengths[i], gen.max_new_tokens)
                answers["naive"], answer_ids["naive"] = got, ids_got
                n_calls = len(CONTESTANTS) * len(sample)
                scale = len(prompts) * len(CONTESTANTS) / n_calls
                total_s = seconds * scale + len(CONTESTANTS) * load_s  # each contestant loads its own copy
                record("naive", {"rows": n_calls, "tokens_sampled": tokens, "seconds_sampled": round(seconds, 2),
                                 "tok_s_without_loads": round(tokens / seconds, 1),
                                 "tokens": round(tokens * scale), "seconds": round(total_s, 1),
                                 "floor_s": round(fs * scale, 2), **peak()})
            elif variant == "probe":
                probe(base, report, args, prompts, by_length, answers, answer_ids)
                save()
        except Exception as exc:  # a failed variant is a finding; the rest still run
            import traceback

            traceback.print_exc()
            report["variants"][variant] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            save()
            reset_peak()

    compare(report, answers)
    try:
        report["consistency"] = {name: consistency(base, rows, args.consistency_rows)
                                 for name, rows in answer_ids.items()}
    except Exception as exc:
        import traceback

        traceback.print_exc()
        report["consistency"] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    save()
    table = summary(report)
    (out / "gpu_generate.txt").write_text(table + "\n")
    print(table)


def sweep(base: Any, report: dict[str, Any], args: Any, floor: Floor) -> None:
    """Seconds per decode step against batch size: (generate 17 tokens - generate 1 token) / 16."""
    vocab = base.model.config.vocab_size
    results = []
    gen_len = 16
    for mode in ("base", "adapter", "mixed"):
        for rows in [int(b) for b in args.sweep_batches.split(",")]:
            if mode == "base" and rows not in (1, 64, 256):
                continue
            if mode == "mixed" and rows < 3:
                continue
            torch.manual_seed(rows)
            ids = torch.randint(3, vocab, (rows, 128), device=base.device)
            kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "do_sample": False,
                                      "pad_token_id": 2}
            adapter = {"base": None, "adapter": "a", "mixed": None}[mode]
            if mode == "mixed":
                kwargs["adapter_names"] = [(BASE_ADAPTER, "a", "b")[i % 3] for i in range(rows)]
            reset_peak()
            with torch.inference_mode(), (active_adapter(base, adapter) if mode != "mixed" else _null()):
                base.model.generate(**kwargs, max_new_tokens=2, min_new_tokens=2)  # warm: shapes, allocator
            times = []
            for new in (1, 1 + gen_len):
                sync()
                start = time.perf_counter()
                with torch.inference_mode(), (active_adapter(base, adapter) if mode != "mixed" else _null()):
                    base.model.generate(**kwargs, max_new_tokens=new, min_new_tokens=new)
                sync()
                times.append(time.perf_counter() - start)
            step = (times[1] - times[0]) / gen_len
            step_floor = (floor.weight_bytes + rows * 136 * floor.kv_per_token) / floor.bandwidth
            results.append({"mode": mode, "batch": rows, "prefill_s": round(times[0], 3), "step_ms": round(1e3 * step, 1),
                            "tok_s": round(rows / step, 1), "floor_step_ms": round(1e3 * step_floor, 2), **peak()})
            print(f"sweep {mode:7s} batch {rows:3d}: {1e3 * step:6.1f} ms/step, {rows / step:7.1f} tok/s "
                  f"(floor {1e3 * step_floor:.2f} ms)", flush=True)
    report["sweep"] = results
    if torch.cuda.is_available():
        report["profile"] = [profile_step(base, 128, mode) for mode in ("adapter", "mixed")]


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def profile_step(base: Any, rows: int, mode: str) -> dict[str, Any]:
    """GPU kernel time of one decode step (torch.profiler), against its wall time unprofiled."""
    from torch.profiler import ProfilerActivity, profile

    vocab = base.model.config.vocab_size
    ids = torch.randint(3, vocab, (rows, 128), device=base.device)
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "do_sample": False,
                              "pad_token_id": 2}
    if mode == "mixed":
        kwargs["adapter_names"] = [(BASE_ADAPTER, "a", "b")[i % 3] for i in range(rows)]
    totals, kernels = [], {}
    for new in (1, 9):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            with torch.inference_mode(), (active_adapter(base, "a") if mode == "adapter" else _null()):
                base.model.generate(**kwargs, max_new_tokens=new, min_new_tokens=new)
            sync()
        events = prof.key_averages()
        totals.append(sum(e.self_device_time_total for e in events))
        if new == 9:
            kernels = {e.key[:80]: e.self_device_time_total for e in events}
            counts = sum(e.count for e in events if e.self_device_time_total > 0)
    step_us = (totals[1] - totals[0]) / 8
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:8]
    fig = {"mode": mode, "batch": rows, "gpu_ms_per_step": round(step_us / 1e3, 2),
           "kernels_per_step_approx": round(counts / 9),
           "top_kernels_ms_9_steps": {k: round(v / 1e3, 1) for k, v in top}}
    print(f"profile {mode} batch {rows}: GPU busy {step_us / 1e3:.1f} ms per decode step, "
          f"~{fig['kernels_per_step_approx']} kernels per step", flush=True)
    return fig


def probe(base: Any, report: dict[str, Any], args: Any, prompts: list[str], by_length: list[int],
          answers: dict[str, dict[str, str]], answer_ids: dict[str, Any]) -> None:
    """Same batch, same padding: the harness's mixed batch against plain HF with each adapter set for the
    whole batch (rows of that adapter compared). Any difference is the mixed-adapter path's own, or the
    GPU's run-to-run nondeterminism, which plain HF run twice on the same batch measures."""
    gen = GenerationConfig(max_new_tokens=args.probe_tokens)
    step = max(1, len(by_length) // args.probe_prompts)
    sample = by_length[step // 2::step][: args.probe_prompts]
    rows = [GenerationRow(key(c, i), c, prompts[i]) for i in sample for c in CONTESTANTS]
    results = generate_batch(base, rows, gen)
    mixed = {r.key: r.text for r in results}
    answer_ids["probe_mixed"] = {r.key: (r.adapter, r.prompt_text, g.token_ids) for r, g in zip(rows, results)}
    plain: dict[str, str] = {}
    plain_ids: dict[str, Any] = {}
    again: dict[str, str] = {}
    for c in CONTESTANTS:
        texts, _, _, ids = plain_generate(base, c, [r.prompt_text for r in rows], args.probe_tokens)
        plain.update({r.key: t for r, t in zip(rows, texts) if r.adapter == c})
        plain_ids.update({r.key: (c, r.prompt_text, x) for r, x in zip(rows, ids) if r.adapter == c})
        if c is None:
            texts2, _, _, _ = plain_generate(base, c, [r.prompt_text for r in rows], args.probe_tokens)
            again.update({r.key: t for r, t in zip(rows, texts2) if r.adapter == c})
    answer_ids["probe_plain"] = plain_ids
    c = report["correctness"]
    c["probe_same_batch"] = {"batch": len(rows), "new_tokens": args.probe_tokens, **match(mixed, plain)}
    for contestant in CONTESTANTS:
        prefix = f"{contestant or BASE_ADAPTER}-"
        c[f"probe_same_batch[{contestant or 'base'}]"] = match(
            {k: v for k, v in mixed.items() if k.startswith(prefix)}, {k: v for k, v in plain.items() if k.startswith(prefix)})
    c["probe_plain_twice[base]"] = match(again, {k: v for k, v in plain.items() if k in again})
    answers["probe_mixed"], answers["probe_plain"] = mixed, plain
    print(f"probe: {c['probe_same_batch']}  plain twice: {c['probe_plain_twice[base]']}", flush=True)


def consistency(base: Any, rows: dict[str, tuple[str | None, str, tuple[int, ...]]], n: int) -> dict[str, Any]:
    """Teacher-forced greedy check on a sample of rows: one forward pass, batch 1, no padding."""
    tok = base.tokenizer
    keys = sorted(rows)
    keys = [k for c in CONTESTANTS for k in keys if rows[k][0] == c][:: max(1, len(keys) // max(n, 1))][:n]
    steps = argmax_equal = 0
    gaps, top_gaps = [], []
    for k in keys:
        adapter, prompt, ids = rows[k]
        if not ids:
            continue
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        full = torch.tensor([prompt_ids + list(ids)], device=base.device)
        with torch.inference_mode(), active_adapter(base, adapter):
            logits = base.model(input_ids=full).logits[0, len(prompt_ids) - 1 : -1].float()
        answer = torch.tensor(ids, device=base.device)
        top2 = logits.topk(2, dim=-1).values
        chosen = logits.gather(1, answer[:, None])[:, 0]
        gap = top2[:, 0] - chosen
        steps += len(ids)
        argmax_equal += int((gap == 0).sum())
        gaps += gap[gap > 0].tolist()
        top_gaps += (top2[:, 0] - top2[:, 1]).tolist()
    median_top = sorted(top_gaps)[len(top_gaps) // 2] if top_gaps else 0.0
    scale = median_top or 1.0
    return {"rows": len(keys), "tokens": steps, "argmax_rate": round(argmax_equal / max(steps, 1), 4),
            "median_top1_top2_gap": round(median_top, 4),
            "off_argmax_gap_max_in_median_gaps": round(max(gaps) / scale, 3) if gaps else 0.0,
            "off_argmax_gap_median_in_median_gaps": round(sorted(gaps)[len(gaps) // 2] / scale, 3) if gaps else 0.0}


def compare(report: dict[str, Any], answers: dict[str, dict[str, str]]) -> None:
    c = report["correctness"]
    if "harness" in answers and "hf_batched" in answers:
        c["harness_vs_hf_batched"] = match(answers["harness"], answers["hf_batched"])
        for contestant in CONTESTANTS:
            prefix = f"{contestant or BASE_ADAPTER}-"
            c[f"harness_vs_hf_batched[{contestant or 'base'}]"] = match(
                {k: v for k, v in answers["harness"].items() if k.startswith(prefix)},
                {k: v for k, v in answers["hf_batched"].items() if k.startswith(prefix)})
    for other in ("harness_old", "harness_sep", "harness_cb", "static", "naive"):
        if other in answers and "harness" in answers:
            c[f"{other}_vs_harness"] = match(answers[other], answers["harness"])
        if other in answers and "hf_batched" in answers:
            c[f"{other}_vs_hf_batched"] = match(answers[other], answers["hf_batched"])
    if "harness" in answers:
        h = answers["harness"]
        n = len([k for k in h if k.startswith(f"{BASE_ADAPTER}-")])
        for a in ("a", "b"):
            differ = sum(h.get(f"{a}-{i}") != h.get(f"{BASE_ADAPTER}-{i}") for i in range(n))
            c[f"adapter_{a}_differs_from_base"] = f"{differ}/{n}"


def summary(report: dict[str, Any]) -> str:
    v = report["variants"]
    naive = v.get("naive", {}).get("tok_s")
    hf = v.get("hf_batched", {}).get("tok_s")
    lines = [f"{report['device']} | {report['versions']} | {report['date']}",
             f"prompts {report.get('prompts')} | new tokens {report['args']['max_new_tokens']} | "
             f"copy {report['device_ceilings']['bandwidth'] / 1e12:.2f} TB/s",
             f"{'variant':18s} {'rows':>5s} {'tokens':>7s} {'seconds':>8s} {'tok/s':>8s} {'x naive':>8s} "
             f"{'x hf64':>7s} {'% floor':>8s} {'peak GiB':>9s}"]
    for name, fig in v.items():
        if "error" in fig:
            lines.append(f"{name:18s} ERROR {fig['error'][:100]}")
            continue
        tok_s = fig.get("tok_s")
        lines.append(
            f"{name:18s} {fig.get('rows', ''):>5} {fig.get('tokens', ''):>7} {fig.get('seconds', ''):>8} "
            f"{tok_s or '':>8} {(f'{tok_s / naive:.1f}' if tok_s and naive else ''):>8} "
            f"{(f'{tok_s / hf:.2f}' if tok_s and hf else ''):>7} {fig.get('pct_floor', ''):>8} {fig.get('peak_gib', ''):>9}")
    for fig in report.get("sweep", []):
        lines.append(f"sweep {fig['mode']:7s} batch {fig['batch']:3d}: {fig['step_ms']:6.1f} ms/step "
                     f"{fig['tok_s']:8.1f} tok/s (floor {fig['floor_step_ms']} ms) peak {fig['peak_gib']} GiB")
    for fig in report.get("profile", []):
        lines.append(f"profile {fig['mode']} batch {fig['batch']}: GPU busy {fig['gpu_ms_per_step']} ms/step, "
                     f"~{fig['kernels_per_step_approx']} kernels/step")
    for name, fig in report["correctness"].items():
        lines.append(f"match {name}: {fig}")
    for name, fig in report.get("consistency", {}).items():
        lines.append(f"greedy consistency {name}: {fig}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
