"""`dentbench`: the command line. Errors become one line and an exit code (2 input, 3 infrastructure)."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import DentbenchError

from .demo import DEMO_CONFIG
from .runcmd import add_gate_outputs, add_run_options, apply_gate, cmd_run, config_from_args


def _offline_defaults() -> None:
    # no telemetry from any library we call; the Hub is still used when reachable
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cmd_gate(args: argparse.Namespace) -> int:
    from .gate import load_gates

    return apply_gate(Path(args.run), load_gates(args.gates), args.junit, args.markdown)


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


def _demo(args: argparse.Namespace) -> int:
    from .demo import cmd_demo

    return cmd_demo(args)


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

    demo = sub.add_parser("demo", help="the whole seed workflow on the embedded SmolLM2 model (no Hub needed)", description=(
        "Train stage 1 (tone) and stage 2 (implant Q&A) LoRA adapters on the embedded SmolLM2-135M-Instruct, merge "
        f"stage 1 into a full model, then benchmark base vs merged stage 1 vs stage 2 with {DEMO_CONFIG} and write "
        "the report. Steps whose outputs are up to date are skipped."))
    add_run_options(demo)
    demo.add_argument("--train-steps", type=int, help="optimiser steps per training stage (default: the stage configs')")
    demo.add_argument("--skip-training", action="store_true", help="benchmark the adapters already trained")
    demo.set_defaults(handler=_demo)

    from .datacli import add_data_commands
    from .judgecli import add_judge_commands
    from .traincli import add_train_commands

    add_data_commands(sub)
    add_judge_commands(sub)
    add_train_commands(sub)

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
