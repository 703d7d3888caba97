"""`dentbench run` and what other commands share with it: run options, config overrides, gating."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import DentbenchError


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
    add_gate_outputs(parser, required=False)


def add_gate_outputs(parser: argparse.ArgumentParser, required: bool) -> None:
    if not required:
        parser.add_argument("--gate", metavar="GATES", help="after the run, apply these gates (exit 1 if they fail)")
    parser.add_argument("--junit", metavar="FILE", help="write the gate's rules as JUnit XML (one test case per rule)")
    parser.add_argument("--markdown", metavar="FILE", help="write the gate's table as Markdown (CI summary, PR comment)")


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
    return cmd_run_config(args, config_from_args(args, default_config))


def cmd_run_config(args: argparse.Namespace, config) -> int:  # noqa: ANN001  (RunConfig, imported lazily)
    from .rundir import summary_markdown
    from .runner import run_benchmark

    gates = None
    if args.gate:
        from .gate import load_gates

        gates = load_gates(args.gate)  # a broken gates file fails before hours of generation
    try:
        result = run_benchmark(config)
    except KeyboardInterrupt:
        print(f"dentbench: interrupted; {kept_in_store(Path(config.output_dir))}; "
              "rerun the same command to resume", file=sys.stderr)
        return 130
    print(summary_markdown(result))
    print(f"run directory: {result.run_dir}")
    print(f"report: {Path(result.run_dir) / 'report.html'}")
    if gates is not None:
        return apply_gate(Path(result.run_dir), gates, args.junit, args.markdown)
    return 0


def apply_gate(run_dir: Path, gates: dict, junit: str | None, markdown_path: str | None) -> int:
    from .fileio import atomic_write_text
    from .gate import evaluate, junit_xml, markdown, table

    if not (run_dir / "results.json").is_file():
        raise DentbenchError(f"{run_dir}: not a run directory (no results.json)")
    candidate, rules = evaluate(run_dir, gates)
    run_id = run_dir.name
    print(table(rules))
    if junit:
        atomic_write_text(junit, junit_xml(run_id, candidate, rules))
    if markdown_path:
        atomic_write_text(markdown_path, markdown(run_id, candidate, rules))
    passed = all(r.passed for r in rules)
    print(f"gate {'passed' if passed else 'FAILED'}: {sum(r.passed for r in rules)}/{len(rules)} rules pass for {candidate}")
    return 0 if passed else 1


def kept_in_store(outputs: Path) -> str:
    import sqlite3

    try:
        with sqlite3.connect(outputs / "dentbench.sqlite", timeout=5) as db:
            answers = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
            judgments = db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
    except sqlite3.Error:
        return "nothing was stored yet"
    return f"the store keeps {answers} answers and {judgments} judgments"
