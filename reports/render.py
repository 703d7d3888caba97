"""Render the run report and the leaderboard: self-contained HTML, Jinja2 with autoescape on.

Everything from a model (answers, judge rationales) and from users (contestant names, prompt
text) is untrusted: autoescape escapes it, and a Content-Security-Policy lets only our own
script run (by hash) and forbids every network request, so even an escaping slip stays inert.
Only our own static CSS and JS are marked safe.
"""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import jinja2

from .charts import Scatter, category_heatmap, length_scatter, loss_scatter, score_bars

TEMPLATES = Path(__file__).resolve().parent / "templates"
DIMENSIONS = ("tone", "accuracy", "terminology")
REFERENCE_JUDGE_LIMITS = (
    "The offline reference judge compares answers with each item's reference, key points and terms "
    "(MiniLM embeddings, word lists). It cannot read negation or contradiction: it catches only "
    "near-verbatim red flags, rewards saying the right things more than avoiding wrong ones, and its "
    "tone features miss novel rudeness. Use it as a regression signal; use a calibrated LLM judge for more."
)

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html", "jinja", "svg"], default=True),
    undefined=jinja2.StrictUndefined,
)


def _asset(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _csp_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()


def _fmt_estimate(est: dict[str, Any] | None) -> tuple[str, float | None]:
    if not est or est.get("mean") is None:
        return "-", None
    return f"{est['mean']:.2f} [{est['low']:.2f}, {est['high']:.2f}]", est["mean"]


def leaderboard_rows(results: dict[str, Any], lm_eval: dict[str, dict[str, Any]]) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Columns and rows of the run's leaderboard, the best value per column marked."""
    scores = results.get("scores", {})
    lm_metrics = sorted({m for per in lm_eval.values() for m in per})
    columns = [
        {"key": "overall", "label": "overall", "help": "mean of the three dimensions", "higher": True},
        *[{"key": d, "label": d, "help": f"judge score for {d}, 1-5", "higher": True} for d in DIMENSIONS],
        {"key": "key_points", "label": "key points", "help": "share of key points met", "higher": True},
        {"key": "red_flags", "label": "red-flag rate", "help": "answers with a red flag", "higher": False},
        {"key": "unscored", "label": "unscored", "help": "judgments with no usable reply", "higher": False},
        *[{"key": f"lm:{m}", "label": m, "help": "lm-eval metric ± stderr", "higher": True} for m in lm_metrics],
        {"key": "words", "label": "mean words", "help": "answer length", "higher": None},
        {"key": "speed", "label": "tokens/s", "help": "generation speed in this run", "higher": None},
    ]
    rows = []
    for c in results.get("contestants", []):
        s = scores.get(c["name"], {})
        cells: dict[str, dict[str, Any]] = {}
        for d in ("overall", *DIMENSIONS):
            text, value = _fmt_estimate(s.get(d))
            cells[d] = {"text": text, "value": value}
        kp = s.get("key_point_coverage")
        cells["key_points"] = {"text": f"{kp:.0%}" if kp is not None else "-", "value": kp}
        rate = s.get("red_flag_rate")
        cells["red_flags"] = {"text": f"{rate:.0%} ({s.get('red_flag_answers', 0)})" if rate is not None else "-", "value": rate}
        unscored = s.get("unscored_rate")
        cells["unscored"] = {"text": f"{unscored:.0%} ({s.get('unscored', 0)})" if unscored is not None else "-", "value": unscored}
        for m in lm_metrics:
            metric = lm_eval.get(c["name"], {}).get(m)
            if metric and metric.get("value") is not None:
                stderr = metric.get("stderr")
                cells[f"lm:{m}"] = {"text": f"{metric['value']:.3f}" + (f" ± {stderr:.3f}" if stderr else ""), "value": metric["value"]}
            else:
                cells[f"lm:{m}"] = {"text": (metric or {}).get("skipped", "-"), "value": None}
        cells["words"] = {"text": f"{c['mean_answer_words']:.0f}", "value": c["mean_answer_words"]}
        speed = c.get("tokens_per_second")
        cells["speed"] = {"text": f"{speed:.1f}" if speed else "cached", "value": speed}
        rows.append({"name": c["name"], "kind": c["kind"], "cells": cells})
    for col in columns:
        values = [r["cells"][col["key"]]["value"] for r in rows if r["cells"][col["key"]]["value"] is not None]
        best = (max(values) if col["higher"] else min(values)) if values and col["higher"] is not None and len(rows) > 1 else None
        for r in rows:
            cell = r["cells"][col["key"]]
            cell["best"] = best is not None and cell["value"] == best
            cell["sort"] = "" if cell["value"] is None else cell["value"]
    return columns, rows


def prompt_views(prompts: list[dict[str, Any]], answers: list[dict[str, Any]], judgments: list[dict[str, Any]],
                 per_prompt: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    by_answer: dict[str, list[dict[str, Any]]] = {}
    for j in judgments:
        by_answer.setdefault(j["answer_key"], []).append(j)
    views = []
    for item in prompts:
        mine = [a for a in answers if a["prompt_id"] == item["id"]]
        cards, flagged = [], False
        for a in mine:
            js = by_answer.get(a["key"], [])
            first = js[0] if js else {}
            scores = per_prompt.get(a["contestant"], {}).get(item["id"])
            hits = [flag for j in js if j.get("scores") for flag, present in zip(item.get("red_flags", []), j.get("red_flags_present", [])) if present]
            flagged |= bool(hits)
            cards.append({
                "contestant": a["contestant"], "text": a["text"], "words": len(a["text"].split()),
                "scores": {k: v for k, v in (scores or {}).items()} if scores else None,
                "unscored_reason": first.get("unscored_reason"), "rationales": first.get("rationales") or {},
                "key_points": first.get("key_points_met") or [], "red_flags_hit": sorted(set(hits)),
            })
        overall = [c["scores"]["overall"] for c in cards if c["scores"]]
        views.append({**item, "answers": cards, "flagged": flagged,
                      "spread": round(max(overall) - min(overall), 3) if len(overall) > 1 else 0})
    return views


def loss_chart(training: dict[str, Any]) -> Scatter | None:
    curve = training.get("loss_curve") or []
    if len(curve) < 2:
        return None
    return loss_scatter(curve, "training loss by step")


def render_loss_svg(curve: list[dict[str, Any]], title: str) -> str:
    """A standalone SVG of a training loss curve (the adapter folder's loss.svg)."""
    return _env.get_template("loss_curve.svg.jinja").render(chart=loss_scatter(curve, title))


def render_run_report(data: dict[str, Any]) -> str:
    """data: manifest, results, answers, judgments, prompts (dicts), per_prompt, lm_eval,
    calibration (or None), training {name: training.json} (plain records, no harness objects)."""
    manifest, results = data["manifest"], data["results"]
    judge = results.get("judge", {})
    columns, rows = leaderboard_rows(results, data.get("lm_eval", {}))
    per_prompt = data.get("per_prompt", {})
    scores = results.get("scores", {})
    charts_data = None
    if scores:
        lengths = [(a["contestant"], len(a["text"].split()), per_prompt[a["contestant"]][a["prompt_id"]]["overall"])
                   for a in data["answers"] if a["prompt_id"] in per_prompt.get(a["contestant"], {})]
        charts_data = {
            "bars": score_bars(scores, ("overall", *DIMENSIONS), "Judge scores with 95% CIs"),
            "heatmap": category_heatmap(results.get("by_category", {}), "Overall score by category") if results.get("by_category") else None,
            "scatter": length_scatter(lengths, "Answer length against overall score") if lengths else None,
        }
    notes = []
    if any(j.get("kind") == "reference" for j in judge.get("judges", [])):
        notes.append(REFERENCE_JUDGE_LIMITS)
    calibration = data.get("calibration")
    if calibration:
        calibration = {
            "rows": calibration["calibration_rows"],
            "agreement": {d: calibration["agreement"][d] for d in DIMENSIONS},
            "sensitivity": calibration["sensitivity"],
            "kinds": sorted({k for row in calibration["sensitivity"].values() for k in row}),
        }
        notes.append("Calibration of this judge (same judge identity and rubric): agreement with the labelled set "
                     "and the sensitivity suite from `dentbench judge calibrate`.")
    training = [{"name": name, "summary": _training_summary(t), "loss_chart": loss_chart(t)}
                for name, t in data.get("training", {}).items()]
    script = _asset("_script.js")
    return _env.get_template("run_report.html.jinja").render(
        run={**results, "started": manifest.get("started", ""), "prompt_set": manifest["prompt_set"],
             "judges": judge.get("judges", []), "rubric": judge.get("rubric"), "rubric_sha256": judge.get("rubric_sha256", "")},
        columns=columns, leaderboard=rows, charts_data=charts_data,
        paired=results.get("paired") or {}, metrics=("overall", *DIMENSIONS), pairwise=judge.get("pairwise") or {},
        judge_notes=notes, calibration=calibration,
        categories=sorted({p.get("category", "") for p in data["prompts"]}),
        prompts=prompt_views(data["prompts"], data["answers"], data.get("judgments", []), per_prompt),
        provenance={"contestants": [{**c, "generation": ", ".join(f"{k}={v}" for k, v in c.get("generation", {}).items())}
                                    for c in manifest.get("contestants", [])],
                    "training": training, "code_revision": manifest.get("code_revision", "unknown"),
                    "packages": manifest.get("packages", {}), "judges": judge.get("judges", []),
                    "host": ", ".join(f"{k} {v}" for k, v in manifest.get("host", {}).items())},
        style=_asset("_style.css"), script=script, script_hash=_csp_hash(script),
    )


def _training_summary(training: dict[str, Any]) -> str:
    keep = {k: v for k, v in training.items() if k != "loss_curve"}
    return "\n".join(f"{k}: {v}" for k, v in keep.items())


def render_leaderboard(groups: list[dict[str, Any]], generated: str) -> str:
    """groups: [{"title", "prompt_set", "judge", "rows": [{contestant, kind, identity, run_id, report, metrics}]}]."""
    script = _asset("_script.js")
    return _env.get_template("leaderboard.html.jinja").render(
        groups=groups, generated=generated, dimensions=("overall", *DIMENSIONS),
        style=_asset("_style.css"), script=script, script_hash=_csp_hash(script),
    )
