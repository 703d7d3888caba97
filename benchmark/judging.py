"""Judging a run's answers: pick the judges, skip what the store already holds, store each
verdict as it arrives, and aggregate per contestant.

Judgment cache key: (answer key, judge identity incl. template hash, rubric hash, sample).
Changing the rubric re-judges without regenerating; rerunning re-judges nothing.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import judges.reference_judge as reference_module
from judges.llm_judge import EndpointJudgeConfig, JudgeRequest, JudgeUnavailable, judge_with_endpoint
from judges.reference_judge import NAME as REFERENCE_NAME
from judges.reference_judge import judge_reference
from judges.rubric import DEFAULT_RUBRIC, Rubric, RubricError, load_rubric
from judges.types import DIMENSIONS, Verdict

from .config import JudgeSettings
from .errors import DentbenchError, InfrastructureError
from .fileio import sha256_file, sha256_json
from .records import Answer, PromptSet
from .stats import bootstrap_mean
from .store import Store


@dataclass(frozen=True)
class Judge:
    label: str  # "reference" or "openai:<model>"
    identity: dict[str, Any]
    endpoint: EndpointJudgeConfig | None = None  # None: the offline reference judge

    @property
    def sha256(self) -> str:
        return sha256_json(self.identity)


@dataclass(frozen=True)
class JudgedAnswer:
    prompt_id: str
    contestant: str
    answer_key: str
    judge: str
    sample: int
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "verdict"}, **self.verdict.to_dict()}


def build_judges(settings: JudgeSettings) -> list[Judge]:
    if settings.kind == "reference":
        code = sha256_file(Path(reference_module.__file__))  # a formula change re-judges
        return [Judge("reference", {"kind": "reference", "name": REFERENCE_NAME, "code_sha256": code})]
    endpoints = [(settings.model, settings.base_url, settings.api_key_env)]
    endpoints += [(m.model, m.base_url, m.api_key_env) for m in settings.panel]
    judges = []
    for model, base_url, key_env in endpoints:
        config = EndpointJudgeConfig(
            model=model or "", base_url=base_url or "", api_key_env=key_env, concurrency=settings.concurrency,
            timeout=settings.timeout, max_retries=settings.max_retries, parse_retries=settings.parse_retries,
            temperature=settings.temperature, max_tokens=settings.max_tokens,
        )
        label = f"openai:{model}"
        if any(j.label == label for j in judges):  # same model behind another endpoint: keep labels unique
            label += f"#{sum(j.label.startswith(label) for j in judges) + 1}"
        judges.append(Judge(label, config.identity, config))
    return judges


def rubric_for(settings: JudgeSettings) -> Rubric:
    try:
        return load_rubric(settings.rubric or DEFAULT_RUBRIC)
    except RubricError as exc:
        raise DentbenchError(f"[judge] rubric: {exc}") from None


def judgment_key(answer_key: str, judge: Judge, rubric: Rubric, sample: int) -> str:
    return sha256_json({"answer": answer_key, "judge": judge.sha256, "rubric": rubric.sha256, "sample": sample})


def judge_answers(answers: Sequence[Answer], prompt_set: PromptSet, settings: JudgeSettings, store: Store) -> list[JudgedAnswer]:
    rubric = rubric_for(settings)
    items = {item.id: item.to_dict() for item in prompt_set.items}
    results: list[JudgedAnswer] = []
    for judge in build_judges(settings):
        samples = settings.repeats if judge.endpoint else 1  # the reference judge is deterministic
        planned = [(a, s, judgment_key(a.key, judge, rubric, s)) for a in answers for s in range(samples)]
        cached = store.cached_judgments(k for _, _, k in planned)
        todo = [(a, s, k) for a, s, k in planned if k not in cached]

        def keep(key: str, verdict: Verdict, answer_key: str, sample: int) -> None:
            store.put_judgment(key, answer_key, judge.sha256, rubric.sha256, sample, json.dumps(verdict.to_dict()))
            cached[key] = json.dumps(verdict.to_dict())

        if todo and judge.endpoint is None:
            verdicts = judge_reference([items[a.prompt_id] for a, _, _ in todo], [a.text for a, _, _ in todo])
            for (answer, sample, key), verdict in zip(todo, verdicts):
                keep(key, verdict, answer.key, sample)
        elif todo:
            by_key = {k: (a, s) for a, s, k in todo}
            requests = [JudgeRequest(k, items[a.prompt_id], a.text, s) for a, s, k in todo]
            try:
                judge_with_endpoint(judge.endpoint, rubric, requests,
                                    lambda key, verdict: keep(key, verdict, by_key[key][0].key, by_key[key][1]),
                                    description=f"judging ({judge.label})")
            except JudgeUnavailable as exc:
                done = store.count_judgments()
                raise InfrastructureError(f"{exc}; {done} judgments are kept in the store, rerun to finish") from None
        for answer, sample, key in planned:
            verdict = Verdict.from_dict(json.loads(cached[key]))
            results.append(JudgedAnswer(answer.prompt_id, answer.contestant, answer.key, judge.label, sample, verdict))
    return results


def aggregate(judged: Sequence[JudgedAnswer], contestants: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per contestant: dimension means with 95% bootstrap CIs, overall, red-flag and unscored rates."""
    out: dict[str, dict[str, Any]] = {}
    for name in contestants:
        mine = [j for j in judged if j.contestant == name]
        per_answer: dict[str, list[Verdict]] = defaultdict(list)
        for j in mine:
            per_answer[j.answer_key].append(j.verdict)
        dims: dict[str, list[float]] = {d: [] for d in DIMENSIONS}
        overall, flagged, coverage = [], 0, []
        for verdicts in per_answer.values():
            scored = [v for v in verdicts if v.scored]
            if any(v.red_flag for v in scored):
                flagged += 1
            if not scored:
                continue
            means = {d: sum(v.scores[d] for v in scored) / len(scored) for d in DIMENSIONS}  # type: ignore[index]
            for d in DIMENSIONS:
                dims[d].append(means[d])
            overall.append(sum(means.values()) / len(DIMENSIONS))
            points = [p for v in scored for p in v.key_points_met]
            if points:
                coverage.append(sum(points) / len(points))
        unscored = sum(1 for j in mine if not j.verdict.scored)
        out[name] = {
            **{d: bootstrap_mean(dims[d]).to_dict() for d in DIMENSIONS},
            "overall": bootstrap_mean(overall).to_dict(),
            "key_point_coverage": round(sum(coverage) / len(coverage), 4) if coverage else None,
            "red_flag_answers": flagged,
            "red_flag_rate": round(flagged / len(per_answer), 4) if per_answer else None,
            "unscored": unscored,
            "unscored_rate": round(unscored / len(mine), 4) if mine else None,
            "judgments": len(mine),
        }
    return out


def repeat_spread(judged: Sequence[JudgedAnswer]) -> dict[str, float | None]:
    """Mean (over answers) of the standard deviation across a judge's k samples, per dimension."""
    import numpy as np

    groups: dict[tuple[str, str], list[Verdict]] = defaultdict(list)
    for j in judged:
        if j.verdict.scored:
            groups[(j.answer_key, j.judge)].append(j.verdict)
    out: dict[str, float | None] = {}
    for dim in DIMENSIONS:
        spreads = [float(np.std([v.scores[dim] for v in vs])) for vs in groups.values() if len(vs) > 1]  # type: ignore[index]
        out[dim] = round(sum(spreads) / len(spreads), 4) if spreads else None
    return out


def panel_agreement(judged: Sequence[JudgedAnswer]) -> dict[str, float | None]:
    """Krippendorff's alpha (interval) between judges over the same answers, per dimension."""
    import krippendorff
    import numpy as np

    judges = sorted({j.judge for j in judged})
    if len(judges) < 2:
        return {}
    answers = sorted({j.answer_key for j in judged})
    out: dict[str, float | None] = {}
    for dim in DIMENSIONS:
        table = np.full((len(judges), len(answers)), np.nan)
        cells: dict[tuple[int, int], list[float]] = defaultdict(list)
        for j in judged:
            if j.verdict.scored:
                cells[(judges.index(j.judge), answers.index(j.answer_key))].append(j.verdict.scores[dim])  # type: ignore[index]
        for (row, col), values in cells.items():
            table[row, col] = sum(values) / len(values)
        try:
            out[dim] = round(float(krippendorff.alpha(reliability_data=table, level_of_measurement="interval")), 4)
        except ValueError:  # too few paired values
            out[dim] = None
    return out


def judge_pairwise(answers: Sequence[Answer], prompt_set: PromptSet, settings: JudgeSettings,
                   store: Store) -> dict[str, dict[str, Any]]:
    """Every contestant against settings.pairwise_baseline, both orders, with the first endpoint judge."""
    from judges.llm_judge import Ask, Answered, ask_all
    from judges.pairwise import TEMPLATE, combine, parse_winner, render_pairwise_prompt, win_rate
    from judges.prompting import template_sha256

    judge = build_judges(settings)[0]
    if judge.endpoint is None or not settings.pairwise_baseline:
        return {}
    items = {item.id: item.to_dict() for item in prompt_set.items}
    by_contestant: dict[str, dict[str, Answer]] = defaultdict(dict)
    for a in answers:
        by_contestant[a.contestant][a.prompt_id] = a
    baseline = by_contestant.get(settings.pairwise_baseline, {})
    identity = sha256_json({"judge": judge.sha256, "pairwise_template": template_sha256(TEMPLATE)})
    plans: list[tuple[str, str, str, str]] = []  # (contestant, prompt id, order, key)
    asks: list[Ask] = []
    for name, mine in by_contestant.items():
        if name == settings.pairwise_baseline:
            continue
        for prompt_id, answer in mine.items():
            if prompt_id not in baseline:
                continue
            base = baseline[prompt_id]
            for order, (first, second) in (("candidate_first", (answer, base)), ("baseline_first", (base, answer))):
                key = sha256_json({"pair": [first.key, second.key], "judge": identity})
                plans.append((name, prompt_id, order, key))
                asks.append(Ask(key, render_pairwise_prompt(items[prompt_id], first.text, second.text)))
    cached = store.cached_judgments(a.key for a in asks)
    todo = [a for a in asks if a.key not in cached]

    def keep(key: str, answered: Answered) -> None:
        record = json.dumps({"winner": answered.value, "error": answered.error, "judge_model": answered.model})
        store.put_judgment(key, key, judge.sha256, "pairwise", 0, record)
        cached[key] = record

    if todo:
        try:
            ask_all(judge.endpoint, todo, lambda _key, text: parse_winner(text), keep, "pairwise judging")
        except JudgeUnavailable as exc:
            raise InfrastructureError(f"{exc}; finished pairwise judgments are kept, rerun to finish") from None
    results: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, dict[str, dict[str, str | None]]] = defaultdict(lambda: defaultdict(dict))
    for name, prompt_id, order, key in plans:
        outcomes[name][prompt_id][order] = json.loads(cached[key])["winner"]
    for name, per_prompt in outcomes.items():
        ids = sorted(per_prompt)
        combined = [combine(per_prompt[i].get("candidate_first"), per_prompt[i].get("baseline_first")) for i in ids]
        words_c = [len(by_contestant[name][i].text.split()) for i in ids]
        words_b = [len(baseline[i].text.split()) for i in ids]
        results[name] = {"baseline": settings.pairwise_baseline, **win_rate(combined, words_c, words_b).to_dict()}
    return results
