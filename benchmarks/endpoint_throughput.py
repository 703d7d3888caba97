"""Endpoint contestant throughput against concurrency on a local OpenAI-compatible server, in one run.

The path past one GPU: contestants served by OpenAI-compatible servers (vLLM with --enable-lora
and tensor parallelism in production), the harness fanning requests out concurrently
(`benchmark.endpoint.generate_via_endpoint`: asyncio, a semaphore of `concurrency` requests in
flight, each answer stored as it arrives). Here: `transformers serve` of the embedded SmolLM2-135M
on a loopback port (continuous batching on, so concurrent requests share forward passes), the same
N dental questions sent at each concurrency through the contestant path, answers/s and generated
tokens/s, and the ratio to concurrency 1. Nothing is cached between rounds.

    .venv/bin/python benchmarks/endpoint_throughput.py [--requests 32] [--max-new-tokens 64] [--concurrency 1 4 16]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from local_server import served_embedded  # noqa: E402
from benchmark.endpoint import generate_via_endpoint  # noqa: E402
from benchmark.generate import GeneratedText  # noqa: E402
from benchmark.prompts import load_prompt_set  # noqa: E402
from benchmark.records import GenerationConfig, ModelSpec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--no-continuous-batching", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dentbench-endpoint-bench-"))
    with served_embedded(work, not args.no_continuous_batching) as (folder, url):
        items = load_prompt_set("prompts/dental_implant_v1.jsonl").items
        questions = [items[i % len(items)].question for i in range(args.requests)]
        spec = ModelSpec(name="served", kind="openai", source=f"openai:{folder}", location=url,
                         endpoint_model=str(folder), api_key_env="DENTBENCH_BENCH_KEY")
        gen = GenerationConfig(max_new_tokens=args.max_new_tokens)
        print(f"{args.requests} contestant requests, max_new_tokens {args.max_new_tokens}, "
              f"continuous batching {'off' if args.no_continuous_batching else 'on'}, cores {os.cpu_count()}")
        base = None
        for concurrency in args.concurrency:
            answers: list[GeneratedText] = []
            jobs = [(f"{concurrency}-{i}", q) for i, q in enumerate(questions)]  # distinct keys, no cache involved
            start = time.perf_counter()
            generate_via_endpoint(spec, jobs, gen, answers.append, concurrency=concurrency, timeout=600, max_retries=0)
            seconds = time.perf_counter() - start
            assert sorted(a.key for a in answers) == sorted(k for k, _ in jobs)  # each answer once, keyed right
            tokens = sum(a.new_tokens for a in answers)
            rate = len(answers) / seconds
            base = base or rate
            print(f"concurrency {concurrency:>2}: {seconds:7.1f} s  {rate:6.2f} answers/s  {tokens / seconds:7.1f} tokens/s  "
                  f"{rate / base:5.2f}x")


if __name__ == "__main__":
    main()
