"""`dentbench data ...`: validate, decontaminate, describe and convert the content files."""
from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path

from .datafiles import SHIPPED, guess_kind, validate_file, words
from .errors import DentbenchError
from .fileio import atomic_write_json, iter_jsonl
from .prompts import load_prompt_set


def cmd_validate(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or list(SHIPPED.values())
    total = 0
    for path in paths:
        problems = validate_file(path, args.kind)
        for problem in problems:
            print(problem, file=sys.stderr)
        status = "ok" if not problems else f"{len(problems)} problem(s)"
        print(f"{path}: {status}")
        total += len(problems)
    if total:
        raise DentbenchError(f"{total} problem(s) in {len(paths)} file(s)")
    return 0


def cmd_decontam(args: argparse.Namespace) -> int:
    from .decontam import find_contamination, load_text_items, report_table

    benchmark = load_prompt_set(args.benchmark)
    others = [Path(p) for p in args.paths] or [SHIPPED["stage1"], SHIPPED["stage2"], SHIPPED["mcq"]]
    items = {str(p): load_text_items(p) for p in others}
    report = find_contamination(benchmark, items, n=args.ngram, cosine_threshold=args.cosine,
                                use_embeddings=not args.no_embeddings)
    print(report_table(report))
    atomic_write_json(args.json, report.to_dict())
    print(f"report: {args.json}")
    contaminated = len(report.contaminated_ids)
    if contaminated > args.max_contaminated:
        print(f"dentbench: {contaminated} contaminated benchmark item(s), allowed {args.max_contaminated}", file=sys.stderr)
        return 1
    return 0


def _lengths(values: list[int]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"min {ordered[0]}, median {statistics.median(ordered):g}, p90 {p90}, max {ordered[-1]}"


def cmd_stats(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or list(SHIPPED.values())
    for path in paths:
        rows = [row for _, row in iter_jsonl(path)]
        kind = guess_kind(path)
        print(f"\n{path} ({kind}): {len(rows)} rows")
        for field in ("category", "difficulty", "voice", "topic", "quality"):
            counts = Counter(str(r[field]) for r in rows if field in r)
            if counts:
                print(f"  by {field}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if kind == "prompts":
            print(f"  question words: {_lengths([words(r['question']) for r in rows])}")
            print(f"  reference words: {_lengths([words(r['reference']) for r in rows])}")
        elif kind in ("stage1", "stage2"):
            print(f"  prompt words: {_lengths([words(r['prompt']) for r in rows])}")
            print(f"  response words: {_lengths([words(r['response']) for r in rows])}")
        elif kind == "mcq":
            print("  answer index: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r['answer'] for r in rows).items())))
        elif kind == "calibration":
            for dim in ("tone", "accuracy", "terminology"):
                counts = Counter(r["labels"][dim] for r in rows)
                print(f"  {dim} labels: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return 0


def cmd_meddialog(args: argparse.Namespace) -> int:
    from training.meddialog import convert_meddialog

    written, skipped = convert_meddialog(
        [Path(p) for p in args.input] or None, Path(args.out), min_words=args.min_words, max_words=args.max_words,
        limit=args.limit,
    )
    print(f"{args.out}: {written} exchanges written, {skipped} skipped")
    return 0


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="validate, decontaminate, describe and convert content files")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    validate = data_sub.add_parser("validate", help="check files against their schemas (default: every shipped file)")
    validate.add_argument("paths", nargs="*", help="files to check (default: prompts/ and data/ shipped files)")
    validate.add_argument("--kind", choices=["prompts", "stage1", "stage2", "mcq", "calibration"],
                          help="schema to use (default: guessed from the file name)")
    validate.set_defaults(handler=cmd_validate)

    decontam = data_sub.add_parser("decontam", help="13-gram and near-duplicate overlap of training/MCQ items with the benchmark")
    decontam.add_argument("paths", nargs="*", help="training or MCQ files (default: the shipped stage1, stage2, MCQ files)")
    decontam.add_argument("--benchmark", default=str(SHIPPED["prompts"]), help="the benchmark prompt set")
    decontam.add_argument("--ngram", type=int, default=13, help="n-gram length (default 13, as GPT-3 and lm-eval)")
    decontam.add_argument("--cosine", type=float, default=0.9, help="near-duplicate cosine threshold (default 0.9)")
    decontam.add_argument("--no-embeddings", action="store_true", help="n-gram test only")
    decontam.add_argument("--max-contaminated", type=int, default=0, help="benchmark items allowed to be hit (default 0)")
    decontam.add_argument("--json", default="outputs/decontam.json", help="where to write the JSON report")
    decontam.set_defaults(handler=cmd_decontam)

    stats = data_sub.add_parser("stats", help="counts by category, difficulty and voice; length distributions")
    stats.add_argument("paths", nargs="*")
    stats.set_defaults(handler=cmd_stats)

    meddialog = data_sub.add_parser("meddialog", help="convert MedDialog (English) dialogues to the seed training format")
    meddialog.add_argument("--input", nargs="*", default=[], help="local .json/.jsonl files (default: the Hub, if reachable)")
    meddialog.add_argument("--out", default="outputs/meddialog_stage1.jsonl")
    meddialog.add_argument("--min-words", type=int, default=20)
    meddialog.add_argument("--max-words", type=int, default=300)
    meddialog.add_argument("--limit", type=int, help="stop after N exchanges")
    meddialog.set_defaults(handler=cmd_meddialog)
