"""Assemble a run's plain records for `reports` and write report.html / leaderboard.html.

The renderer gets dicts read from the run directory, so `dentbench report RUN` re-renders any
past run exactly as the run itself did.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from reports.render import render_leaderboard, render_run_report

from .analysis import per_prompt_scores
from .errors import DentbenchError
from .fileio import atomic_write_text, iter_jsonl
from .prompts import load_prompt_set
from .store import Store


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DentbenchError(f"{path}: not found (is this a dentbench run directory?)") from None
    except json.JSONDecodeError as exc:
        raise DentbenchError(f"{path}: invalid JSON ({exc.msg})") from None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(path)] if path.is_file() and path.stat().st_size else []


def find_calibration(results: dict[str, Any], folder: Path) -> dict[str, Any] | None:
    """The newest calibration report of the run's first judge under the same rubric, if any."""
    judges = results.get("judge", {}).get("judges") or []
    if not judges or not folder.is_dir():
        return None
    candidates = []
    for path in folder.glob("*.json"):
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if report.get("judge", {}).get("sha256") == judges[0]["sha256"] and \
                report.get("rubric_sha256") == results["judge"].get("rubric_sha256"):
            candidates.append((path.stat().st_mtime, report))
    return max(candidates, key=lambda c: c[0])[1] if candidates else None


def run_report_data(run_dir: Path, outputs: Path | None = None) -> dict[str, Any]:
    manifest = _read_json(run_dir / "manifest.json")
    results = _read_json(run_dir / "results.json")
    answers = _jsonl(run_dir / "answers.jsonl")
    judgments = _jsonl(run_dir / "judgments.jsonl")
    ids = manifest["prompt_set"]["ids"]
    try:
        prompt_set = load_prompt_set(manifest["prompt_set"]["path"])
        items = {item.id: item.to_dict() for item in prompt_set.items}
        prompts = [items[i] for i in ids if i in items]
    except DentbenchError:  # the prompt file moved: show what the answers carry
        prompts = [{"id": i, "question": "(prompt file not found)", "reference": "", "category": "", "difficulty": "",
                    "voice": "", "key_points": [], "red_flags": []} for i in ids]
    training = {}
    for c in manifest.get("contestants", []):
        if c.get("kind") == "adapter":
            record = Path(c["source"]) / "training.json"
            if record.is_file():
                try:
                    training[c["name"]] = json.loads(record.read_text())
                except json.JSONDecodeError:
                    pass
    outputs = outputs or run_dir.parent.parent
    return {
        "manifest": manifest, "results": results, "answers": answers, "judgments": judgments, "prompts": prompts,
        "per_prompt": per_prompt_scores(judgments), "lm_eval": results.get("lm_eval", {}),
        "calibration": find_calibration(results, outputs / "calibration"), "training": training,
    }


def write_run_report(run_dir: Path) -> Path:
    path = run_dir / "report.html"
    atomic_write_text(path, render_run_report(run_report_data(run_dir)))
    return path


def leaderboard_groups(store: Store, outputs: Path) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for run in store.list_runs():
        judge = run.get("judge") or {}
        judge_label = ", ".join(j["label"] for j in judge.get("judges", [])) or "not judged"
        key = (f"{run['prompt_set_version']} ({run['prompt_set_sha256'][:8]})",
               f"{judge_label} · rubric {judge.get('rubric', '-')} ({(judge.get('rubric_sha256') or '')[:8]})",
               ",".join(j["sha256"] for j in judge.get("judges", [])))
        group = groups.setdefault(key, {"prompt_set": key[0], "judge": key[1], "rows": [], "lm_metrics": set()})
        report = Path(run["run_dir"]) / "report.html"
        for c in run["contestants"]:
            scores = (run.get("scores") or {}).get(c["name"], {})
            lm = {m: v.get("value") for m, v in (run.get("lm_eval") or {}).get(c["name"], {}).items()}
            group["lm_metrics"] |= set(lm)
            group["rows"].append({
                "contestant": c["name"], "kind": c["kind"], "identity": c["identity"], "run_id": run["run_id"],
                "report": str(report.relative_to(outputs)) if report.is_file() and report.is_relative_to(outputs) else None,
                "scores": scores, "red_flag_rate": scores.get("red_flag_rate"), "unscored_rate": scores.get("unscored_rate"),
                "lm_eval": lm, "n_prompts": run["n_prompts"],
            })
    out = []
    for group in groups.values():
        group["lm_metrics"] = sorted(group["lm_metrics"])
        group["rows"].sort(key=lambda r: -((r["scores"].get("overall") or {}).get("mean") or 0))
        out.append(group)
    return out


def write_leaderboard(outputs: Path) -> Path:
    store_path = outputs / "dentbench.sqlite"
    if not store_path.is_file():
        raise DentbenchError(f"{store_path}: no store yet; run `dentbench run` first")
    with Store(store_path) as store:
        groups = leaderboard_groups(store, outputs)
    path = outputs / "leaderboard.html"
    atomic_write_text(path, render_leaderboard(groups, time.strftime("%Y-%m-%d %H:%M")))
    return path


