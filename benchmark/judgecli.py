"""`dentbench judge calibrate`: how well does a judge agree with labels, and does it notice damage?"""
from __future__ import annotations

import argparse

from pathlib import Path
from typing import Any

from judges.calibration import PERTURBATIONS, agreement, build_suite, sensitivity
from judges.llm_judge import JudgeRequest, JudgeUnavailable, judge_with_endpoint
from judges.reference_judge import judge_reference
from judges.types import DIMENSIONS, Verdict

from .config import JudgeSettings, load_config
from .datafiles import SHIPPED
from .errors import DentbenchError, InfrastructureError
from .fileio import atomic_write_json, iter_jsonl
from .judging import build_judges, rubric_for
from .prompts import load_prompt_set

GOOD_ANSWERS = Path("data/judge_good_answers.jsonl")


def judge_texts(settings: JudgeSettings, pairs: list[tuple[dict[str, Any], str]]) -> list[Verdict]:
    """Score (item, answer) pairs with the config's first judge, in order."""
    judge = build_judges(settings)[0]
    if judge.endpoint is None:
        return judge_reference([item for item, _ in pairs], [answer for _, answer in pairs])
    verdicts: dict[str, Verdict] = {}
    requests = [JudgeRequest(str(i), item, answer) for i, (item, answer) in enumerate(pairs)]
    try:
        judge_with_endpoint(judge.endpoint, rubric_for(settings), requests, verdicts.__setitem__, "calibrating")
    except JudgeUnavailable as exc:
        raise InfrastructureError(str(exc)) from None
    return [verdicts[str(i)] for i in range(len(pairs))]


def load_good_answers(path: Path, known: set[str]) -> dict[str, list[tuple[str, str]]]:
    good: dict[str, list[tuple[str, str]]] = {}
    if path.is_file():
        for line, row in iter_jsonl(path):
            if row.get("prompt_id") not in known or not isinstance(row.get("answer"), str):
                raise DentbenchError(f"{path}:{line}: needs a known 'prompt_id' and an 'answer' string")
            good.setdefault(row["prompt_id"], []).append(("independent", row["answer"]))
    return good


def cmd_calibrate(args: argparse.Namespace) -> int:
    settings = load_config(args.judge).judge if args.judge else JudgeSettings()
    prompt_set = load_prompt_set(args.prompts)
    items = [item.to_dict() for item in prompt_set.items][: args.limit or None]
    by_id = {item["id"]: item for item in items}
    calibration = [row for _, row in iter_jsonl(args.labels) if row["prompt_id"] in by_id]
    label_verdicts = judge_texts(settings, [(by_id[r["prompt_id"]], r["answer"]) for r in calibration])
    agree = agreement([r["labels"] for r in calibration], label_verdicts)

    from judges.embeddings import embed

    good = {item["id"]: [("reference", item["reference"])] for item in items}
    for prompt_id, answers in load_good_answers(Path(args.good_answers), set(by_id)).items():
        good[prompt_id] += answers
    for row in calibration:  # the labelled excellent answers are independent good answers too
        if row["quality"] == "excellent":
            good[row["prompt_id"]].append(("independent", row["answer"]))
    suite = build_suite(items, good, embed)
    suite_verdicts = judge_texts(settings, [(by_id[row.prompt_id], row.answer) for row in suite])
    passes = sensitivity(suite, suite_verdicts)

    judge = build_judges(settings)[0]
    rubric = rubric_for(settings)
    report = {
        "judge": {"label": judge.label, **judge.identity, "sha256": judge.sha256},
        "rubric": rubric.name, "rubric_sha256": rubric.sha256,
        "prompt_set": prompt_set.version, "prompt_set_sha256": prompt_set.sha256,
        "calibration_rows": len(calibration), "agreement": agree, "sensitivity": passes,
    }
    out = Path(args.out or f"outputs/calibration/{judge.label.replace(':', '_').replace('/', '_')}.json")
    atomic_write_json(out, report)
    print(f"judge {judge.label}, rubric {rubric.name} ({rubric.sha256[:12]}), {len(calibration)} labelled answers")
    print(f"{'dimension':<12} {'n':>4} {'spearman':>9} {'qwk':>7} {'mae':>6}")
    for dim in DIMENSIONS:
        a = agree[dim]
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{dim:<12} {a['n']:>4} {fmt(a['spearman']):>9} {fmt(a['qwk']):>7} {fmt(a['mae']):>6}")
    print(f"unscored: {agree['unscored']['n']}")
    print("\nsensitivity (good answer above the damaged one on the damaged dimension)")
    print(f"{'good answers':<13} " + " ".join(f"{k:>18}" for k in PERTURBATIONS))
    for good_kind, kinds in passes.items():
        cells = [f"{kinds[k]['pass_rate']:.1%} of {kinds[k]['pairs']}" if k in kinds else "-" for k in PERTURBATIONS]
        print(f"{good_kind:<13} " + " ".join(f"{c:>18}" for c in cells))
    print(f"\nreport: {out}")
    return 0


def add_judge_commands(sub: argparse._SubParsersAction) -> None:
    judge = sub.add_parser("judge", help="judge tools: calibrate a judge against labels and perturbations")
    judge_sub = judge.add_subparsers(dest="judge_command", required=True, metavar="JUDGE_COMMAND")
    calibrate = judge_sub.add_parser("calibrate", help="agreement with human labels and the sensitivity suite", description=(
        "Score data/judge_calibration.jsonl and a perturbation suite built from the prompt set with the judge of "
        "a config's [judge] section (default: the offline reference judge); print agreement and pass rates, "
        "write JSON for the report and the gate."))
    calibrate.add_argument("--judge", metavar="CONFIG", help="a TOML with a [judge] section (default: reference judge)")
    calibrate.add_argument("--prompts", default=str(SHIPPED["prompts"]))
    calibrate.add_argument("--labels", default=str(SHIPPED["calibration"]))
    calibrate.add_argument("--good-answers", default=str(GOOD_ANSWERS), help="independently written good answers")
    calibrate.add_argument("--limit", type=int, help="use only the first N prompts (endpoint judges are slow)")
    calibrate.add_argument("--out", help="JSON report path (default outputs/calibration/<judge>.json)")
    calibrate.set_defaults(handler=cmd_calibrate)



