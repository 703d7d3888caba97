"""One benchmark run: resolve contestants, generate what the cache lacks, write the run directory.

Order of work: validate everything (prompts, config, contestants, output folder)
before the first model loads, so bad input costs seconds and writes nothing.
Answers land in the SQLite store batch by batch; the run directory is written
once at the end, in a staging folder renamed into place.
"""
from __future__ import annotations

import gc
import os
import platform
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig
from .endpoint import generate_via_endpoint
from .errors import InfrastructureError, located
from .fileio import atomic_write_json, iter_jsonl, sha256_json
from .analysis import by_category, paired_comparisons, per_prompt_scores
from .judging import (
    JudgedAnswer, aggregate, build_judges, judge_answers, judge_pairwise, panel_agreement, repeat_spread, rubric_for,
)
from .reporting import write_leaderboard
from .rundir import code_revision, device_name, package_versions, write_run_dir
from .generate import GeneratedText, GenerationRow, generate_rows, render_prompt
from .contestants import Contestant, resolve_contestants, weights_spec
from .lmeval import collect_tasks, dump, evaluate_endpoint, evaluate_loaded, lm_eval_version, plan_tasks, settled
from .loading import attach_adapter, load_base
from .prompts import limit_prompts, load_prompt_set, stratified_sample
from .records import Answer, ContestantSummary, GenerationConfig, ModelSpec, PromptSet, RunResult
from .specs import resolve_weights
from .store import Store







@dataclass(frozen=True)
class PlannedAnswer:
    contestant: str
    prompt_id: str
    key: str
    prompt_text: str  # rendered text for local models, the bare question for endpoints








def answer_key(identity: str, prompt_text: str, gen: GenerationConfig) -> str:
    return sha256_json({"model": identity, "prompt": prompt_text, "generation": gen.to_dict()})


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as exc:
        raise InfrastructureError(f"output_dir: cannot write to {folder} ({exc.strerror})") from None


def load_replayed_answers(spec: ModelSpec, prompt_set: PromptSet) -> dict[str, str]:
    """answers:FILE rows are {"id": prompt id, "answer": text}; every id must be in the prompt set.

    `prompt_set` is the whole file, not the run's sample: a replay file may cover more.
    """
    known = {item.id for item in prompt_set.items}
    answers: dict[str, str] = {}
    for line, row in iter_jsonl(spec.location):
        if not isinstance(row.get("id"), str) or not isinstance(row.get("answer"), str):
            raise located(spec.location, line, "answer rows need string fields 'id' and 'answer'")
        if row["id"] in answers:
            raise located(spec.location, line, f"duplicate id '{row['id']}'")
        if row["id"] not in known:
            raise located(spec.location, line, f"id '{row['id']}' is not in prompt set {prompt_set.version}")
        answers[row["id"]] = row["answer"]
    return answers











def plan_answers(
    contestants: list[Contestant], prompt_set: PromptSet, models_dir: Path, config: RunConfig
) -> list[PlannedAnswer]:
    from transformers import AutoTokenizer

    tokenizers: dict[str, Any] = {}
    planned = []
    for c in contestants:
        tokenizer = None
        if c.spec.loads_weights:
            assert c.base_identity is not None
            if c.base_identity not in tokenizers:
                folder = resolve_weights(weights_spec(c), models_dir, config.allow_pickle)
                tokenizers[c.base_identity] = AutoTokenizer.from_pretrained(folder, trust_remote_code=config.trust_remote_code)
            tokenizer = tokenizers[c.base_identity]
        for item in prompt_set.items:
            text = render_prompt(tokenizer, item.question, c.gen) if tokenizer is not None else item.question
            planned.append(PlannedAnswer(c.spec.name, item.id, answer_key(c.identity, text, c.gen), text))
    return planned


def _store_generated(store: Store, identity_of: dict[str, str]) -> Callable[[list[GeneratedText]], None]:
    def on_batch(results: list[GeneratedText]) -> None:
        store.put_answers(
            Answer("", "", identity_of[r.key], r.text, r.key, r.new_tokens, r.seconds, r.finish_reason) for r in results
        )

    return on_batch


def generate_missing(
    contestants: list[Contestant],
    planned: list[PlannedAnswer],
    missing: set[str],
    store: Store,
    models_dir: Path,
    config: RunConfig,
    prompt_set: PromptSet,
    task_todo: dict[str, list[tuple[str, str]]] | None = None,
    task_manager: Any = None,
) -> None:
    """Generate what the cache lacks and run missing lm-eval tasks, loading each base once."""
    task_todo = task_todo or {}
    attempted: set[str] = set()  # task results stored in this run (a retried failure is not retried twice)
    by_name = {c.spec.name: c for c in contestants}
    identity_of = {p.key: by_name[p.contestant].identity for p in planned}
    on_batch = _store_generated(store, identity_of)
    todo: dict[str, list[PlannedAnswer]] = {}
    for p in planned:
        if p.key in missing:
            todo.setdefault(p.contestant, []).append(p)
    # local models: one load per base, every adapter of that base attached to it
    groups: dict[str, list[Contestant]] = {}
    for c in contestants:
        if c.spec.loads_weights and (c.spec.name in todo or task_todo.get(c.spec.name)):
            groups.setdefault(c.base_identity or "", []).append(c)
    for members in groups.values():
        folder = resolve_weights(weights_spec(members[0]), models_dir, config.allow_pickle)
        base = load_base(folder, config.precision, trust_remote_code=config.trust_remote_code)  # type: ignore[arg-type]
        for c in members:
            if c.spec.kind == "adapter":
                attach_adapter(base, c.spec.name, Path(c.spec.location))
        for c in members:
            rows = [
                GenerationRow(p.key, c.spec.name if c.spec.kind == "adapter" else None, p.prompt_text)
                for p in todo.get(c.spec.name, [])
            ]
            if rows:
                generate_rows(base, rows, c.gen, config.batch_size, on_batch, description=c.spec.name)
        for c in members:  # lm-eval on the same loaded weights, adapters switched the same way
            pending = [(task, key) for task, key in task_todo.get(c.spec.name, [])
                       if key not in attempted and key not in settled(store, [key])]  # a twin may have done it
            if pending:
                adapter = c.spec.name if c.spec.kind == "adapter" else None
                results = evaluate_loaded(base, adapter, [t for t, _ in pending], config.lm_eval, task_manager)
                for task, key in pending:
                    store.put_task_result(key, c.identity, task, dump(results[task]))
                    attempted.add(key)
        del base
        gc.collect()
        _empty_cuda_cache()
    for c in contestants:
        pending = [(task, key) for task, key in task_todo.get(c.spec.name, [])
                   if c.spec.kind == "openai" and key not in attempted and key not in settled(store, [key])]
        if pending:
            results = evaluate_endpoint(c.spec, [t for t, _ in pending], config.lm_eval, task_manager, config.concurrency)
            for task, key in pending:
                store.put_task_result(key, c.identity, task, dump(results[task]))
                attempted.add(key)
        if c.spec.name not in todo or c.spec.loads_weights:
            continue
        jobs = todo[c.spec.name]
        if c.spec.kind == "openai":
            generate_via_endpoint(
                c.spec,
                [(p.key, p.prompt_text) for p in jobs],
                c.gen,
                lambda r: on_batch([r]),
                concurrency=config.concurrency,
                timeout=config.request_timeout,
            )
        elif c.spec.kind == "answers":
            replayed = load_replayed_answers(c.spec, prompt_set)
            on_batch(
                [GeneratedText(p.key, replayed[p.prompt_id], len(replayed[p.prompt_id].split()), 0.0, "replayed")
                 for p in jobs if p.prompt_id in replayed]
            )


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()











def summarise(contestants: list[Contestant], answers: list[Answer], n_prompts: int) -> list[ContestantSummary]:
    summaries = []
    for c in contestants:
        mine = [a for a in answers if a.contestant == c.spec.name]
        fresh = [a for a in mine if not a.cached and a.finish_reason != "replayed"]
        seconds = sum(a.seconds for a in fresh)
        summaries.append(
            ContestantSummary(
                name=c.spec.name,
                kind=c.spec.kind,
                source=c.spec.source,
                identity=c.identity,
                answers=len(mine),
                generated=len([a for a in mine if not a.cached]),
                missing=n_prompts - len(mine),
                mean_answer_words=round(sum(len(a.text.split()) for a in mine) / max(len(mine), 1), 1),
                tokens_per_second=round(sum(a.new_tokens for a in fresh) / seconds, 1) if seconds > 0 else None,
            )
        )
    return summaries








def select_prompts(config: RunConfig) -> tuple[PromptSet, PromptSet]:
    """(the whole prompt file, the part this run uses)."""
    full = prompt_set = load_prompt_set(config.prompts)
    if config.sample_per_category:
        prompt_set = stratified_sample(prompt_set, config.sample_per_category)
    if config.limit:
        prompt_set = limit_prompts(prompt_set, config.limit)
    return full, prompt_set


def run_benchmark(config: RunConfig) -> RunResult:
    started = time.time()
    full_set, prompt_set = select_prompts(config)
    outputs = Path(config.output_dir).resolve()
    check_writable(outputs / "runs")
    models_dir = outputs / "models"
    with Store(outputs / "dentbench.sqlite") as store:
        contestants = resolve_contestants(config, store, models_dir)
        for c in contestants:
            if c.spec.kind == "answers":
                load_replayed_answers(c.spec, full_set)  # fail on a bad file before any model loads
        planned = plan_answers(contestants, prompt_set, models_dir, config)
        cached = store.cached_answers(p.key for p in planned)
        missing = {p.key for p in planned} - set(cached)
        tasks = plan_tasks(contestants, config, store)
        generate_missing(contestants, planned, missing, store, models_dir, config, full_set, tasks.todo, tasks.manager)
        lm_eval_results = collect_tasks(contestants, tasks, store)
        rows = store.cached_answers(p.key for p in planned)
        by_name = {c.spec.name: c for c in contestants}
        answers = [
            Answer(p.prompt_id, p.contestant, by_name[p.contestant].identity, row[1], p.key, row[2], row[3], row[4],
                   cached=p.key not in missing)
            for p in planned
            if (row := rows.get(p.key)) is not None
        ]
        judged: list[JudgedAnswer] = []
        judge_info: dict[str, Any] = {"enabled": False}
        if config.judge.enabled:
            judged = judge_answers(answers, prompt_set, config.judge, store)
            rubric = rubric_for(config.judge)
            judge_info = {
                "enabled": True,
                "judges": [{"label": j.label, **j.identity, "sha256": j.sha256} for j in build_judges(config.judge)],
                "rubric": rubric.name,
                "rubric_sha256": rubric.sha256,
                "repeats": config.judge.repeats,
                "api_key_env": config.judge.api_key_env if config.judge.kind == "openai" else None,
                "repeat_spread": repeat_spread(judged) if config.judge.repeats > 1 else None,
                "panel_alpha": panel_agreement(judged) or None,
                "pairwise": judge_pairwise(answers, prompt_set, config.judge, store) or None,
            }
        run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(started)) + "-" + secrets.token_hex(3)
        run_dir = outputs / "runs" / run_id
        names = [c.spec.name for c in contestants]
        baseline = config.baseline or names[0]
        prompt_scores = per_prompt_scores([j.to_dict() for j in judged])
        result = RunResult(
            run_id=run_id,
            run_dir=str(run_dir),
            prompt_set_version=prompt_set.version,
            prompt_set_sha256=prompt_set.sha256,
            n_prompts=len(prompt_set.items),
            contestants=tuple(summarise(contestants, answers, len(prompt_set.items))),
            wall_seconds=round(time.time() - started, 2),
            judge=judge_info,
            scores=aggregate(judged, names) if judged else {},
            baseline=baseline,
            paired=paired_comparisons(prompt_scores, baseline) if judged else {},
            by_category=by_category(prompt_scores, prompt_set) if judged else {},
            lm_eval=lm_eval_results,
        )
        manifest = {
            "run_id": run_id,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "config": config.to_dict(),
            "prompt_set": {"path": prompt_set.path, "version": prompt_set.version, "sha256": prompt_set.sha256,
                           "ids": [item.id for item in prompt_set.items]},
            "contestants": [
                {**c.spec.describe(), "identity": c.identity, "base_identity": c.base_identity,
                 "generation": c.gen.to_dict()}
                for c in contestants
            ],
            "lm_eval": {"version": lm_eval_version(), "tasks": tasks.fingerprints} if config.lm_eval.enabled else None,
            "packages": package_versions(),
            "code_revision": code_revision(),
            "host": {"python": platform.python_version(), "machine": platform.machine(), "device": device_name()},
        }
        write_run_dir(run_dir, manifest, answers, result, judged)
        store.record_run(result.to_dict(), [s.to_dict() for s in result.contestants])
    write_leaderboard(outputs)
    return result







def run_lm_eval_only(config: RunConfig) -> dict[str, dict[str, Any]]:
    """`dentbench lmeval`: the config's lm-eval tasks for every contestant, no generation or judging."""
    import dataclasses

    if not config.lm_eval.enabled:
        config = dataclasses.replace(config, lm_eval=dataclasses.replace(config.lm_eval, enabled=True))
    outputs = Path(config.output_dir).resolve()
    check_writable(outputs / "lmeval")
    with Store(outputs / "dentbench.sqlite") as store:
        contestants = resolve_contestants(config, store, outputs / "models")
        tasks = plan_tasks(contestants, config, store)
        generate_missing(contestants, [], set(), store, outputs / "models", config, PromptSet("", "", "", ()),
                         tasks.todo, tasks.manager)
        results = collect_tasks(contestants, tasks, store)
    atomic_write_json(outputs / "lmeval" / f"{time.strftime('%Y%m%d-%H%M%S')}.json",
                      {"lm_eval_version": lm_eval_version(), "tasks": tasks.fingerprints,
                       "identities": {c.spec.name: c.identity for c in contestants}, "results": results})
    return results
