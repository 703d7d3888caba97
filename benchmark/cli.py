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
    from .rundir import summary_markdown
    from .runner import run_benchmark

    config = config_from_args(args, default_config)
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


def cmd_gate(args: argparse.Namespace) -> int:
    from .gate import load_gates

    return apply_gate(Path(args.run), load_gates(args.gates), args.junit, args.markdown)


def kept_in_store(outputs: Path) -> str:
    import sqlite3

    try:
        with sqlite3.connect(outputs / "dentbench.sqlite", timeout=5) as db:
            answers = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
            judgments = db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
    except sqlite3.Error:
        return "nothing was stored yet"
    return f"the store keeps {answers} answers and {judgments} judgments"


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


def cmd_lmeval(args: argparse.Namespace) -> int:
    from .runner import run_lm_eval_only

    results = run_lm_eval_only(config_from_args(args))
    for name, metrics in results.items():
        for metric, value in metrics.items():
            if "skipped" in value:
                print(f"{name:<24} {metric:<40} skipped: {value['skipped']}")
            else:
                stderr = f" ± {value['stderr']:.4f}" if value.get("stderr") is not None else ""
                print(f"{name:<24} {metric:<40} {value['value']:.4f}{stderr}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .reporting import write_run_report

    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise DentbenchError(f"{run_dir}: run directory not found")
    print(f"report: {write_run_report(run_dir)}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .reporting import write_leaderboard

    print(f"leaderboard: {write_leaderboard(Path(args.output_dir))}")
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

    lmeval = sub.add_parser("lmeval", help="run the config's lm-eval tasks for every contestant (no generation or judging)",
                            description="lm-eval tasks ([lm_eval] in the config; default dental_implant_mcq) on the same 4-bit "
                                        "(PEFT) weights the generator uses; results are cached in the store.")
    add_run_options(lmeval)
    lmeval.set_defaults(handler=cmd_lmeval)

    gate = sub.add_parser("gate", help="apply CI gates to a finished run (exit 0 pass, 1 fail, 2 bad input, 3 infra)",
                          description="Check a run's results against configs/gates.toml-style rules.")
    gate.add_argument("run", help="outputs/runs/<run-id>")
    gate.add_argument("--gates", required=True, help="gates file (TOML), e.g. configs/gates.toml")
    add_gate_outputs(gate, required=True)
    gate.set_defaults(handler=cmd_gate)

    report = sub.add_parser("report", help="(re)render a run's report.html from its run directory")
    report.add_argument("run", help="outputs/runs/<run-id>")
    report.set_defaults(handler=cmd_report)

    board = sub.add_parser("leaderboard", help="render outputs/leaderboard.html from every run in the store")
    board.add_argument("--output-dir", default="outputs")
    board.set_defaults(handler=cmd_leaderboard)

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
