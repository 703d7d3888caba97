"""`dentbench`: the command line. Errors become one line and an exit code (2 input, 3 infrastructure)."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import DentbenchError

DEMO_CONFIG = "configs/demo.toml"


def _offline_defaults() -> None:
    # no telemetry from any library we call; the Hub is still used when reachable
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="run config (TOML); see configs/")
    parser.add_argument("--adapter", metavar="PATH", help="LoRA adapter folder to add as the candidate (replaces a contestant of that name)")
    parser.add_argument("--adapter-name", default="candidate", help="contestant name for --adapter (default: candidate)")
    parser.add_argument("--prompts", help="prompt set JSONL (overrides [run].prompts)")
    parser.add_argument("--sample-per-category", type=int, help="use the first N prompts of each category")
    parser.add_argument("--full", action="store_true", help="use the whole prompt set (ignore sample_per_category)")
    parser.add_argument("--limit", type=int, help="use only the first N prompts")
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--precision", choices=["4bit", "8bit", "bf16", "fp32"], help="weights precision (default 4bit)")
    parser.add_argument("--chat-format", choices=["chat_template", "instruction"])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--output-dir", help="where runs, models and the store go (default outputs)")
    parser.add_argument("--trust-remote-code", action="store_true", default=None, help="allow model repos to run their own code")
    parser.add_argument("--allow-pickle", action="store_true", default=None, help="allow loading pickle (.bin) weights")


def config_from_args(args: argparse.Namespace, default_config: str | None = None):
    from .config import load_config, with_adapter

    overrides = {
        "prompts": args.prompts,
        "sample_per_category": args.sample_per_category,
        "limit": args.limit,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "chat_format": args.chat_format,
        "seed": args.seed,
        "output_dir": args.output_dir,
        "trust_remote_code": args.trust_remote_code,
        "allow_pickle": args.allow_pickle,
    }
    config = load_config(args.config or default_config, overrides)
    if args.full:
        import dataclasses

        config = dataclasses.replace(config, sample_per_category=None, limit=None)
    if args.adapter:
        config = with_adapter(config, args.adapter, args.adapter_name)
    return config


def cmd_run(args: argparse.Namespace, default_config: str | None = None) -> int:
    from .rundir import summary_markdown
    from .runner import run_benchmark

    config = config_from_args(args, default_config)
    result = run_benchmark(config)
    print(summary_markdown(result))
    print(f"run directory: {result.run_dir}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .store import Store

    store_path = Path(args.output_dir) / "dentbench.sqlite"
    if not store_path.is_file():
        print(f"no runs yet ({store_path} does not exist)")
        return 0
    with Store(store_path) as store:
        for run in store.list_runs():
            names = ", ".join(c["name"] for c in run["contestants"])
            print(f"{run['run_id']}  {run['prompt_set_version']}  {run['n_prompts']} prompts  [{names}]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dentbench",
        description="Evaluate dental-implant LLMs: generate answers from every contestant, score them, report, gate.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="benchmark the contestants of a config", description=(
        "Generate answers for the prompt set from every contestant (4-bit by default), reusing cached "
        "answers, and write outputs/runs/<run-id>/ (manifest.json, answers.jsonl, results.json, summary.md)."))
    add_run_options(run)
    run.set_defaults(handler=cmd_run)

    demo = sub.add_parser("demo", help="the whole job on the embedded SmolLM2 model (no Hub needed)", description=(
        f"Run {DEMO_CONFIG}: the embedded SmolLM2-135M-Instruct contestants on a stratified sample of the prompt set."))
    add_run_options(demo)
    demo.set_defaults(handler=lambda a: cmd_run(a, DEMO_CONFIG))

    from .datacli import add_data_commands
    from .judgecli import add_judge_commands

    add_data_commands(sub)
    add_judge_commands(sub)

    runs = sub.add_parser("runs", help="list the runs in the store")
    runs.add_argument("--output-dir", default="outputs")
    runs.set_defaults(handler=cmd_runs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _offline_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except DentbenchError as exc:
        if args.debug:
            raise
        print(f"dentbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dentbench: interrupted; finished answers are kept in the store and a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
