"""lm-eval tasks for every contestant, on the same 4-bit (PEFT) weights the generator uses.

lm-eval 0.4.13 cannot take `load_in_4bit` in model_args on transformers 5, so we hand it the
already loaded model object (`HFLM(pretrained=model, tokenizer=tok)`), switching adapters on
the shared base exactly as generation does. Each task runs on its own: a task whose dataset is
unreachable (no Hub) is reported as skipped with the reason and never fails the run.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import LmEvalSettings, RunConfig
from .contestants import Contestant
from .errors import DentbenchError
from .fileio import sha256_file, sha256_json
from .generate import active_adapter
from .store import Store

TASK_TEMPLATES = Path(__file__).resolve().parent / "lmeval_tasks"
MCQ_DATA = Path("data/dental_mcq.jsonl")


def lm_eval_version() -> str:
    try:
        return metadata.version("lm_eval")
    except metadata.PackageNotFoundError:
        return "not installed"


def prepare_tasks(mcq_data: Path = MCQ_DATA) -> Path:
    """Our task YAMLs with the absolute MCQ path written in, in a fresh include folder."""
    folder = Path(tempfile.mkdtemp(prefix="dentbench-lmeval-tasks-"))
    data = str(mcq_data.resolve())
    for template in TASK_TEMPLATES.glob("*.yaml.in"):
        (folder / template.name.removesuffix(".in")).write_text(template.read_text().replace("@DATA@", data))
    return folder


def check_mcq_data(path: Path) -> None:
    """A malformed MCQ row is named by file and line before lm-eval sees it."""
    from .datafiles import validate_file

    problems = validate_file(path, "mcq")
    if problems:
        raise DentbenchError(str(problems[0]) + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))


def task_manager(include: Path) -> Any:
    import logging

    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # the pubmedqa override warns on purpose
    return TaskManager(include_path=str(include))


def check_tasks(settings: LmEvalSettings, manager: Any, where: str) -> None:
    for task in settings.expanded():
        if task not in manager.all_tasks:
            raise DentbenchError(f"{where}: unknown lm-eval task '{task}' (see `lm_eval --tasks list`, "
                                 f"or dental_implant_mcq, dental_implant_mcq_gen, medical_suite)")


def task_fingerprint(task: str, settings: LmEvalSettings, mcq_data: Path = MCQ_DATA) -> dict[str, Any]:
    """What makes a task result reusable: our YAML and data for local tasks, lm-eval's version for all."""
    fingerprint: dict[str, Any] = {"task": task, "lm_eval": lm_eval_version(), "fewshot": settings.num_fewshot,
                                   "limit": settings.limit, "chat_template": settings.apply_chat_template}
    template = TASK_TEMPLATES / f"{task}.yaml.in"
    if template.is_file():
        fingerprint["yaml_sha256"] = sha256_file(template)
        if "@DATA@" in template.read_text():
            fingerprint["data_sha256"] = sha256_file(mcq_data)
    return fingerprint


def result_key(identity: str, fingerprint: dict[str, Any]) -> str:
    return sha256_json({"model": identity, "task": fingerprint})


def parse_results(task: str, results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """lm-eval's {"acc,none": .., "acc_stderr,none": ..} -> {"task.acc": {"value", "stderr"}}."""
    out: dict[str, dict[str, float | None]] = {}
    for key, value in results.get(task, {}).items():
        if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
            continue
        metric, _, filt = key.partition(",")
        stderr = results[task].get(f"{metric}_stderr,{filt}")
        name = metric if filt == "none" else f"{metric},{filt}"
        out[f"{task}.{name}"] = {"value": round(float(value), 6),
                                 "stderr": round(float(stderr), 6) if isinstance(stderr, (int, float)) else None}
    return out


def evaluate_loaded(base: Any, adapter: str | None, tasks: Sequence[str], settings: LmEvalSettings,
                    manager: Any) -> dict[str, dict[str, Any]]:
    """Run each task on the loaded base (adapter active, or disabled for the base itself)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    results: dict[str, dict[str, Any]] = {}
    with active_adapter(base, adapter):
        lm = HFLM(pretrained=base.model, tokenizer=base.tokenizer, batch_size=settings.batch_size)
        for task in tasks:
            try:
                out = simple_evaluate(model=lm, tasks=[task], num_fewshot=settings.num_fewshot, limit=settings.limit,
                                      task_manager=manager, apply_chat_template=settings.apply_chat_template,
                                      log_samples=False, verbosity="ERROR")
            except (ConnectionError, OSError, FileNotFoundError, ValueError) as exc:
                # datasets raises these when the Hub is unreachable or a dataset is gone
                results[task] = failed_skip(exc)
                continue
            results[task] = {"metrics": parse_results(task, out["results"]),
                             "n_samples": (out.get("n-samples") or {}).get(task, {}).get("effective")}
    return results


def failed_skip(exc: BaseException) -> dict[str, Any]:
    """A task that failed this time (Hub unreachable, disk full, endpoint down) is reported as
    skipped with the reason, and marked for retry: the store keeps it for this run's results,
    but the next run tries again instead of serving the failure from the cache."""
    return {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}", "retry": True}


def skipped_for(kind: str) -> str:
    return "pre-generated answers: no model to score"


LOGLIKELIHOOD_SKIP = "log-likelihood task: an OpenAI-compatible endpoint returns no token log-probabilities for lm-eval"


def output_type(task: str, manager: Any) -> str | None:
    """A task's output type from its config, without loading its dataset."""
    entry = manager.task_index.get(task)
    config = getattr(entry, "cfg", None) or {}
    if not config and getattr(entry, "yaml_path", None):
        import yaml

        config = yaml.safe_load(Path(entry.yaml_path).read_text().replace("!function", "")) or {}
    return config.get("output_type")


def evaluate_endpoint(spec: Any, tasks: Sequence[str], settings: LmEvalSettings, manager: Any,
                      concurrency: int) -> dict[str, dict[str, Any]]:
    """Generative tasks through lm-eval's chat-completions model; log-likelihood tasks are skipped."""
    import os

    from lm_eval import simple_evaluate

    results: dict[str, dict[str, Any]] = {}
    for task in tasks:
        if output_type(task, manager) != "generate_until":
            results[task] = {"skipped": LOGLIKELIHOOD_SKIP}
            continue
        args: dict[str, Any] = {"model": spec.endpoint_model, "base_url": spec.location.rstrip("/") + "/chat/completions",
                                "num_concurrent": concurrency, "max_retries": 2, "tokenized_requests": False}
        key = os.environ.get(spec.api_key_env or "")
        if key:
            args["auth_token"] = key  # in memory only: lm-eval's own output is parsed, never stored
        try:
            out = simple_evaluate(model="local-chat-completions", model_args=args, tasks=[task], limit=settings.limit,
                                  num_fewshot=settings.num_fewshot, task_manager=manager, apply_chat_template=True,
                                  log_samples=False, verbosity="ERROR")
        except (ConnectionError, OSError, ValueError, RuntimeError) as exc:
            results[task] = failed_skip(exc)
            continue
        results[task] = {"metrics": parse_results(task, out["results"])}
    return results


def flatten(per_task: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{task: {metrics}} -> {"task.metric": {"value", "stderr"}} plus {"task": {"skipped": why}}."""
    flat: dict[str, dict[str, Any]] = {}
    for task, result in per_task.items():
        if "skipped" in result:
            flat[task] = {"skipped": result["skipped"]}
        else:
            flat.update(result["metrics"])
    return flat


def dump(result: dict[str, Any]) -> str:
    return json.dumps(result, sort_keys=True)


@dataclass
class TaskPlan:
    manager: Any = None
    todo: dict[str, list[tuple[str, str]]] | None = None  # contestant -> [(task, cache key)] still to run
    keys: dict[str, list[tuple[str, str]]] | None = None  # contestant -> every (task, key)
    fingerprints: dict[str, Any] | None = None


def plan_tasks(contestants: list[Contestant], config: RunConfig, store: Store) -> TaskPlan:
    """Which lm-eval results the store lacks; unknown task names fail here, before any work."""
    if not config.lm_eval.enabled:
        return TaskPlan()
    if any(t.startswith("dental_implant_mcq") for t in config.lm_eval.expanded()):
        check_mcq_data(MCQ_DATA)
    manager = task_manager(prepare_tasks())
    check_tasks(config.lm_eval, manager, f"{config.source_file} [lm_eval]")
    fingerprints = {t: task_fingerprint(t, config.lm_eval) for t in config.lm_eval.expanded()}
    keys = {c.spec.name: [(t, result_key(c.identity, fp)) for t, fp in fingerprints.items()]
            for c in contestants if c.spec.kind != "answers"}
    cached = settled(store, [k for pairs in keys.values() for _, k in pairs])
    todo = {name: [(t, k) for t, k in pairs if k not in cached] for name, pairs in keys.items()}
    return TaskPlan(manager, todo, keys, fingerprints)


def settled(store: Store, keys: list[str]) -> set[str]:
    """Keys with a stored result that is final (not a failure marked for retry)."""
    return {k for k, v in store.cached_task_results(keys).items() if not json.loads(v).get("retry")}


def collect_tasks(contestants: list[Contestant], plan: TaskPlan, store: Store) -> dict[str, dict[str, Any]]:
    if plan.keys is None or plan.fingerprints is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for c in contestants:
        if c.spec.kind == "answers":
            out[c.spec.name] = {task: {"skipped": skipped_for(c.spec.kind)} for task in plan.fingerprints}
            continue
        pairs = plan.keys[c.spec.name]
        stored = store.cached_task_results(k for _, k in pairs)
        out[c.spec.name] = flatten({task: json.loads(stored[key]) for task, key in pairs if key in stored})
    return out
