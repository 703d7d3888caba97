"""Foundation benchmark: the naive way against the harness, on the embedded model, in one run.

Naive: each contestant loaded on its own (base; base+adapter A; base+adapter B),
one prompt at a time. Harness: `run_benchmark` on an empty store: one shared
4-bit base, adapters switched per batch, length-sorted left-padded batches.
Both greedy, 4-bit, same prompts, same max_new_tokens.

    .venv/bin/python benchmarks/cpu_generate.py [--prompts FILE] [--n-prompts 24] [--max-new-tokens 64]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmark.config import ContestantConfig, JudgeSettings, RunConfig  # noqa: E402
from benchmark.embedded import materialise  # noqa: E402
from benchmark.generate import GenerationRow, generate_rows, render_prompt  # noqa: E402
from benchmark.loading import attach_adapter, load_base  # noqa: E402
from benchmark.prompts import limit_prompts, load_prompt_set, stratified_sample  # noqa: E402
from benchmark.records import GenerationConfig  # noqa: E402
from benchmark.runner import run_benchmark  # noqa: E402
from training.synthetic import make_random_adapter  # noqa: E402


def naive(folder: Path, adapters: list[Path | None], questions: list[str], gen: GenerationConfig) -> tuple[float, int]:
    start, tokens = time.perf_counter(), 0
    for index, adapter in enumerate(adapters):
        base = load_base(folder, "4bit")  # each contestant pays for its own load
        if adapter is not None:
            attach_adapter(base, "only", adapter)
        for i, question in enumerate(questions):
            row = GenerationRow(f"{index}-{i}", "only" if adapter else None, render_prompt(base.tokenizer, question, gen))
            done: list = []
            generate_rows(base, [row], gen, 1, done.extend, description=f"naive {index}")
            tokens += done[0].new_tokens
        del base
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", default="prompts/dental_implant_v1.jsonl")
    parser.add_argument("--n-prompts", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dentbench-bench-"))
    prompt_set = load_prompt_set(args.prompts)
    prompt_set = limit_prompts(stratified_sample(prompt_set, max(1, -(-args.n_prompts // 10))), args.n_prompts)
    subset = work / "prompts.jsonl"
    subset.write_text("".join(json.dumps(item.to_dict()) + "\n" for item in prompt_set.items))
    folder = materialise("smollm2-135m-instruct", work / "outputs" / "models")
    adapters = [make_random_adapter(folder, work / f"adapter_{s}", seed=s) for s in (1, 2)]
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens)
    questions = [item.question for item in prompt_set.items]

    naive_s, naive_tokens = naive(folder, [None, *adapters], questions, gen)

    config = RunConfig(
        prompts=str(subset), max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
        output_dir=str(work / "outputs"),
        judge=JudgeSettings(enabled=False),  # this benchmark times generation only
        contestants=(
            ContestantConfig("base", "embedded:smollm2-135m-instruct"),
            ContestantConfig("adapter_a", str(adapters[0])),
            ContestantConfig("adapter_b", str(adapters[1])),
        ),
    )
    start = time.perf_counter()
    result = run_benchmark(config)
    harness_s = time.perf_counter() - start
    answers = [json.loads(x) for x in (Path(result.run_dir) / "answers.jsonl").read_text().splitlines()]
    harness_tokens = sum(a["new_tokens"] for a in answers)

    print(f"contestants 3 (base + 2 adapters), prompts {len(questions)}, max_new_tokens {args.max_new_tokens}, "
          f"cores {os.cpu_count()}")
    print(f"naive   : {naive_s:7.1f} s  {naive_tokens:6d} tokens  {naive_tokens / naive_s:7.1f} tokens/s")
    print(f"harness : {harness_s:7.1f} s  {harness_tokens:6d} tokens  {harness_tokens / harness_s:7.1f} tokens/s "
          f"(batch {args.batch_size})")
    print(f"speed-up: {naive_s / harness_s:.2f}x wall time, "
          f"{(harness_tokens / harness_s) / (naive_tokens / naive_s):.2f}x tokens/s")


if __name__ == "__main__":
    main()
