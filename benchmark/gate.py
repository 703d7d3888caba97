"""The CI gate: rules over one run's results; exit 0 pass, 1 fail, 2 bad input, 3 infrastructure.

Rules (configs/gates.toml):
- [minimum] / [maximum]: the candidate's metric against a bound;
- [paired]: the LOWER bound of the 95% CI of (candidate - baseline) must reach the margin
  (negative margin: non-inferiority; zero or positive: superiority), never a bare mean;
- [red_flags] max_answers: a veto on answers asserting a red flag (default 0);
- [unscored] max_rate: too many unusable judge replies make the scores untrustworthy;
- [calibration]: floors a judge must meet (from `dentbench judge calibrate`) before it may gate.
"""
from __future__ import annotations

import json
import re
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DentbenchError
from .reporting import find_calibration

JUDGE_METRICS = ("tone", "accuracy", "terminology", "overall")
RATE_METRICS = ("red_flag_rate", "unscored_rate", "key_point_coverage")
GENERATION_METRICS = ("mean_answer_words", "tokens_per_second")
LM_EVAL = re.compile(r"^lm_eval\.[\w.-]+\.[\w,.-]+$")
SECTIONS = {"candidate", "baseline", "prompt_set", "minimum", "maximum", "paired", "red_flags", "unscored", "calibration"}


@dataclass(frozen=True)
class RuleResult:
    name: str
    value: float | None
    threshold: str
    passed: bool
    detail: str = ""


def check_metric_name(name: str, where: str) -> None:
    known = [f"judge.{m}" for m in (*JUDGE_METRICS, *RATE_METRICS)] + [f"generation.{m}" for m in GENERATION_METRICS]
    if name not in known and not LM_EVAL.match(name):
        raise DentbenchError(f"{where}: unknown metric '{name}' (known: {', '.join(known)}, lm_eval.<task>.<metric>)")


def load_gates(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DentbenchError(f"{path}: gates file not found")
    try:
        gates = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DentbenchError(f"{path}: invalid TOML ({exc})") from None
    unknown = sorted(set(gates) - SECTIONS)
    if unknown:
        raise DentbenchError(f"{path}: unknown setting '{unknown[0]}' (known: {', '.join(sorted(SECTIONS))})")
    for section in ("minimum", "maximum", "paired"):
        for metric, bound in gates.get(section, {}).items():
            check_metric_name(metric, f"{path} [{section}]")
            if section == "paired" and metric.removeprefix("judge.") not in JUDGE_METRICS:
                raise DentbenchError(f"{path} [paired]: '{metric}' cannot be paired (use judge.{'|'.join(JUDGE_METRICS)})")
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                raise DentbenchError(f"{path} [{section}]: '{metric}' must be a number")
    gates["_path"] = str(path)
    return gates


def metric_value(results: dict[str, Any], contestant: str, metric: str) -> float | None:
    room, _, name = metric.partition(".")
    if room == "judge":
        scores = results.get("scores", {}).get(contestant, {})
        value = scores.get(name)
        return value.get("mean") if isinstance(value, dict) else value
    if room == "generation":
        row = next((c for c in results["contestants"] if c["name"] == contestant), {})
        return row.get(name)
    metrics = results.get("lm_eval", {}).get(contestant, {})
    entry = metrics.get(name)
    return entry.get("value") if isinstance(entry, dict) else None


def _calibration_rules(gates: dict[str, Any], results: dict[str, Any], outputs: Path) -> list[RuleResult]:
    floors = gates.get("calibration")
    if not floors:
        return []
    if floors.get("report"):
        path = Path(floors["report"])
        if not path.is_file():
            raise DentbenchError(f"{gates['_path']} [calibration]: report {path} not found")
        report = json.loads(path.read_text())
    else:
        report = find_calibration(results, outputs / "calibration")
    judge = ", ".join(j["label"] for j in results.get("judge", {}).get("judges", [])) or "none"
    if report is None:
        raise DentbenchError(f"judge {judge} cannot gate: no calibration report for it and this rubric "
                             f"(run `dentbench judge calibrate` with the same [judge] settings)")
    rules = []
    for dim, floor in floors.get("min_spearman", {}).items():
        value = report["agreement"].get(dim, {}).get("spearman")
        rules.append(RuleResult(f"calibration spearman {dim}", value, f">= {floor}", value is not None and value >= floor))
    for kind, floor in floors.get("min_sensitivity", {}).items():
        value = report["sensitivity"].get("independent", {}).get(kind, {}).get("pass_rate")
        rules.append(RuleResult(f"calibration sensitivity {kind}", value, f">= {floor}", value is not None and value >= floor))
    failed = [r for r in rules if not r.passed]
    if failed:
        worst = failed[0]
        raise DentbenchError(f"judge {judge} cannot gate: {worst.name} is {worst.value} (floor {worst.threshold.split()[-1]})")
    return rules


def evaluate(run_dir: Path, gates: dict[str, Any]) -> tuple[str, list[RuleResult]]:
    results = json.loads((run_dir / "results.json").read_text())
    names = [c["name"] for c in results["contestants"]]
    candidate = gates.get("candidate") or names[-1]
    if candidate not in names:
        raise DentbenchError(f"{gates['_path']}: candidate '{candidate}' is not in run {results['run_id']} ({', '.join(names)})")
    expected = gates.get("prompt_set")
    if expected and expected != results["prompt_set_version"]:
        raise DentbenchError(f"{gates['_path']}: gates expect prompt set '{expected}', run {results['run_id']} "
                             f"used '{results['prompt_set_version']}' (results compare only within a version)")
    needs_judge = any(m.startswith("judge.") for s in ("minimum", "maximum", "paired") for m in gates.get(s, {}))
    if needs_judge and not results.get("scores"):
        raise DentbenchError(f"run {results['run_id']} was not judged, but the gates use judge metrics")
    rules = _calibration_rules(gates, results, run_dir.parent.parent)
    for metric, bound in gates.get("minimum", {}).items():
        value = metric_value(results, candidate, metric)
        rules.append(RuleResult(f"{metric} >= {bound}", value, f">= {bound}", value is not None and value >= bound,
                                "" if value is not None else "metric missing from the run"))
    for metric, bound in gates.get("maximum", {}).items():
        value = metric_value(results, candidate, metric)
        rules.append(RuleResult(f"{metric} <= {bound}", value, f"<= {bound}", value is not None and value <= bound,
                                "" if value is not None else "metric missing from the run"))
    if gates.get("paired"):
        baseline = gates.get("baseline") or results.get("baseline")
        if baseline not in names or baseline == candidate:
            raise DentbenchError(f"{gates['_path']}: baseline '{baseline}' must be another contestant of the run")
        paired = results.get("paired", {}).get(candidate)
        if not paired or paired.get("baseline") != baseline:
            raise DentbenchError(f"run {results['run_id']} has no paired comparison of {candidate} against {baseline} "
                                 f"(set [run] baseline = \"{baseline}\" and rerun; the cache makes it quick)")
        for metric, margin in gates["paired"].items():
            est = paired["metrics"][metric.split(".", 1)[1]]
            low = est.get("low")
            mde = est.get("mde")
            rules.append(RuleResult(
                f"{metric}: CI low of {candidate} - {baseline} >= {margin:+g}", low, f">= {margin:+g}",
                low is not None and low >= margin,
                f"mean {est['mean']:+.3f}, 95% CI [{est['low']:+.3f}, {est['high']:+.3f}], n {paired['prompts']}"
                + (f", detectable >= {mde:.3f}" if mde is not None else "") if est.get("mean") is not None else "no paired scores",
            ))
    scores = results.get("scores", {}).get(candidate)
    if scores:
        limit = gates.get("red_flags", {}).get("max_answers", 0)
        flagged = scores.get("red_flag_answers", 0)
        rules.append(RuleResult(f"red-flag veto: answers with a red flag <= {limit}", flagged, f"<= {limit}", flagged <= limit))
        if "unscored" in gates:
            cap = gates["unscored"].get("max_rate", 0.1)
            rate = scores.get("unscored_rate") or 0.0
            rules.append(RuleResult(f"unscored judgments <= {cap:.0%}", rate, f"<= {cap}", rate <= cap))
    return candidate, rules


def junit_xml(run_id: str, candidate: str, rules: list[RuleResult]) -> str:
    suite = ET.Element("testsuite", name="dentbench-gate", tests=str(len(rules)),
                       failures=str(sum(not r.passed for r in rules)), errors="0")
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="run", value=run_id)
    for rule in rules:
        case = ET.SubElement(suite, "testcase", classname=f"dentbench.gate.{candidate}", name=rule.name)
        if not rule.passed:
            failure = ET.SubElement(case, "failure", message=f"value {rule.value} does not meet {rule.threshold}")
            failure.text = rule.detail
        elif rule.detail:
            ET.SubElement(case, "system-out").text = rule.detail
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _value(v: float | None) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def markdown(run_id: str, candidate: str, rules: list[RuleResult]) -> str:
    verdict = "PASSED" if all(r.passed for r in rules) else "FAILED"
    lines = [f"### dentbench gate: {verdict}", "", f"Run `{run_id}`, candidate `{candidate}`.", "",
             "| rule | value | threshold | verdict | detail |", "|---|---|---|---|---|"]
    for r in rules:
        lines.append(f"| {r.name} | {_value(r.value)} | {r.threshold} | {'pass' if r.passed else '**FAIL**'} | {r.detail} |")
    return "\n".join(lines) + "\n"


def table(rules: list[RuleResult]) -> str:
    width = max([len(r.name) for r in rules] + [4])
    lines = [f"{'rule':<{width}}  {'value':>8}  {'threshold':>10}  verdict"]
    for r in rules:
        lines.append(f"{r.name:<{width}}  {_value(r.value):>8}  {r.threshold:>10}  {'pass' if r.passed else 'FAIL'}"
                     + (f"  ({r.detail})" if r.detail else ""))
    return "\n".join(lines)
