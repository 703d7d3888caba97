"""The run directory and its provenance: manifest facts, the readable summary, atomic writes.

outputs/runs/<run-id>/ is written in a hidden staging folder and renamed into place, so a
run folder exists complete or not at all. A failed write (disk full) removes the staging
folder and says so in one line: the answers and judgments are already in the store.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import InfrastructureError
from .fileio import atomic_write_json, atomic_write_jsonl, atomic_write_text, cannot_write
from .judging import JudgedAnswer
from .records import Answer, RunResult
from .reporting import write_run_report

PACKAGES = ("dentbench", "torch", "transformers", "peft", "bitsandbytes", "accelerate", "openai", "jinja2", "lm_eval")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def code_revision() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if rev.returncode != 0:
        return "unknown"
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def summary_markdown(result: RunResult) -> str:
    lines = [
        f"# dentbench run {result.run_id}",
        "",
        f"Prompt set: {result.prompt_set_version} ({result.n_prompts} prompts, sha256 {result.prompt_set_sha256[:12]})",
        f"Wall time: {result.wall_seconds:.1f} s",
        "",
        "| contestant | kind | answers | generated now | missing | mean words | tokens/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in result.contestants:
        speed = f"{c.tokens_per_second:.1f}" if c.tokens_per_second is not None else "cached"
        lines.append(f"| {c.name} | {c.kind} | {c.answers} | {c.generated} | {c.missing} | {c.mean_answer_words} | {speed} |")
    if result.scores:
        judges = ", ".join(j["label"] for j in result.judge.get("judges", []))
        lines += ["", f"Judge: {judges}; rubric {result.judge.get('rubric')} ({result.judge.get('rubric_sha256', '')[:12]})", "",
                  "| contestant | overall | tone | accuracy | terminology | red flags | unscored |",
                  "|---|---|---|---|---|---|---|"]
        for name, s in result.scores.items():
            cells = [_estimate(s[k]) for k in ("overall", "tone", "accuracy", "terminology")]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['red_flag_answers']} | {s['unscored']} |")
    return "\n".join(lines) + "\n"


def _estimate(e: dict[str, Any]) -> str:
    if e["mean"] is None:
        return "-"
    return f"{e['mean']:.2f} [{e['low']:.2f}, {e['high']:.2f}]"


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu x{os.cpu_count()}"


def write_run_dir(run_dir: Path, manifest: dict[str, Any], answers: list[Answer], result: RunResult,
                  judged: list[JudgedAnswer]) -> None:
    """Write into a hidden staging folder, then rename: the run folder appears complete or not at all."""
    staging = run_dir.parent / f".staging-{run_dir.name}"
    try:
        atomic_write_json(staging / "manifest.json", manifest)
        atomic_write_jsonl(staging / "answers.jsonl", (a.to_dict() for a in answers))
        atomic_write_json(staging / "results.json", result.to_dict())
        if judged:
            atomic_write_jsonl(staging / "judgments.jsonl", (j.to_dict() for j in judged))
        write_run_report(staging)  # last: it reads the files above
        atomic_write_text(staging / "summary.md", summary_markdown(result))
        try:
            os.replace(staging, run_dir)
        except OSError as exc:
            raise cannot_write(run_dir, exc) from None
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, InfrastructureError):
            raise InfrastructureError(f"{exc}; the answers and judgments are kept in the store, "
                                      "rerun to write the run folder") from None
        raise
