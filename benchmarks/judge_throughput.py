"""Judge throughput against concurrency on a local OpenAI-compatible endpoint, in one run.

Starts `transformers serve` with the embedded model on a loopback port (continuous batching
on by default, so concurrent requests can share forward passes), sends the same N rubric-judge
requests at concurrency 1, 4 and 16 through the real judge path (`ask_all`), and prints
requests/s and the ratio to concurrency 1. Nothing is cached between rounds.

    .venv/bin/python benchmarks/judge_throughput.py [--requests 32] [--max-tokens 32] [--no-continuous-batching]
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
from benchmark.prompts import load_prompt_set  # noqa: E402
from judges.llm_judge import Ask, EndpointJudgeConfig, ask_all  # noqa: E402
from judges.prompting import render_rubric_prompt  # noqa: E402
from judges.rubric import load_rubric  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--no-continuous-batching", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dentbench-judge-bench-"))
    with served_embedded(work, not args.no_continuous_batching) as (folder, url):
        rubric = load_rubric()
        items = [i.to_dict() for i in load_prompt_set("prompts/dental_implant_v1.jsonl").items]
        prompts = [render_rubric_prompt(items[i % len(items)], items[(i + 1) % len(items)]["reference"], rubric)
                   for i in range(args.requests)]
        base = None
        print(f"{args.requests} judge requests, max_tokens {args.max_tokens}, "
              f"continuous batching {'off' if args.no_continuous_batching else 'on'}, cores {os.cpu_count()}")
        for concurrency in args.concurrency:
            config = EndpointJudgeConfig(model=str(folder), base_url=url, concurrency=concurrency,
                                         timeout=600, max_retries=0, parse_retries=0, max_tokens=args.max_tokens)
            asks = [Ask(f"{concurrency}-{i}", p) for i, p in enumerate(prompts)]  # distinct keys, no cache involved
            results: dict[str, object] = {}
            start = time.perf_counter()
            ask_all(config, asks, lambda _k, text: text, results.__setitem__, f"concurrency {concurrency}")
            seconds = time.perf_counter() - start
            rate = len(results) / seconds
            base = base or rate
            print(f"concurrency {concurrency:>2}: {seconds:7.1f} s  {rate:6.2f} requests/s  {rate / base:5.2f}x")


if __name__ == "__main__":
    main()
