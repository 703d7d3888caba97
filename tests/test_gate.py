"""The gate: every rule passes and fails on crafted results; exit codes; JUnit that parses."""
from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmark.cli import main

from .conftest import SMALL_PROMPTS, write_config


def estimate(mean, low, high):
    return {"mean": mean, "low": low, "high": high, "n": 30}


RESULTS = {
    "run_id": "20261124-000000-abcdef", "run_dir": "", "prompt_set_version": "dental_implant_v1",
    "prompt_set_sha256": "0" * 64, "n_prompts": 30, "wall_seconds": 1.0, "baseline": "base",
    "contestants": [
        {"name": "base", "kind": "hub", "source": "m", "identity": "a" * 64, "answers": 30, "generated": 30, "missing": 0,
         "mean_answer_words": 120.0, "tokens_per_second": 100.0},
        {"name": "candidate", "kind": "adapter", "source": "x", "identity": "b" * 64, "answers": 30, "generated": 30,
         "missing": 0, "mean_answer_words": 140.0, "tokens_per_second": 90.0},
    ],
    "judge": {"enabled": True, "judges": [{"label": "reference", "kind": "reference", "sha256": "j" * 64}],
              "rubric": "dental_v1", "rubric_sha256": "r" * 64},
    "scores": {
        "base": {"overall": estimate(3.0, 2.8, 3.2), "accuracy": estimate(3.0, 2.7, 3.3), "red_flag_answers": 1,
                 "red_flag_rate": 0.033, "unscored": 0, "unscored_rate": 0.0},
        "candidate": {"overall": estimate(3.6, 3.4, 3.8), "accuracy": estimate(3.5, 3.2, 3.8), "tone": estimate(4, 3.8, 4.2),
                      "red_flag_answers": 0, "red_flag_rate": 0.0, "unscored": 1, "unscored_rate": 0.0333,
                      "key_point_coverage": 0.7},
    },
    "paired": {"candidate": {"baseline": "base", "prompts": 30, "metrics": {
        "overall": {**estimate(0.6, 0.35, 0.85), "mde": 0.2}, "accuracy": {**estimate(0.5, -0.05, 1.0), "mde": 0.4},
        "tone": {**estimate(0.1, -0.1, 0.3), "mde": 0.2}, "terminology": {**estimate(0.0, -0.2, 0.2), "mde": 0.2}}}},
    "lm_eval": {"candidate": {"dental_implant_mcq.acc": {"value": 0.41, "stderr": 0.04}}},
}


def make_run(tmp_path: Path, results: dict) -> Path:
    run = tmp_path / "outputs" / "runs" / results["run_id"]
    run.mkdir(parents=True, exist_ok=True)
    (run / "results.json").write_text(json.dumps(results))
    return run


def gates_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gates.toml"
    path.write_text(text)
    return path


RULES = {
    # name: (gates text, passes on RESULTS?)
    "minimum passes": ('[minimum]\n"judge.overall" = 3.5\n', True),
    "minimum fails": ('[minimum]\n"judge.overall" = 3.7\n', False),
    "maximum rate": ('[maximum]\n"judge.red_flag_rate" = 0.0\n', True),
    "lm-eval metric": ('[minimum]\n"lm_eval.dental_implant_mcq.acc" = 0.40\n', True),
    "lm-eval metric too low": ('[minimum]\n"lm_eval.dental_implant_mcq.acc" = 0.45\n', False),
    "lm-eval metric missing": ('[minimum]\n"lm_eval.medqa_4options.acc" = 0.3\n', False),
    "paired non-inferiority": ('[paired]\n"judge.overall" = -0.1\n', True),
    "paired superiority needs the CI, not the mean": ('[paired]\n"judge.accuracy" = 0.0\n', False),
    "red-flag veto default 0": ("", True),
    "unscored cap": ("[unscored]\nmax_rate = 0.02\n", False),
}


@pytest.mark.parametrize("case", sorted(RULES))
def test_each_rule_passes_and_fails(case, tmp_path, capsys):
    text, passes = RULES[case]
    run = make_run(tmp_path, RESULTS)
    junit, md = tmp_path / "gate.xml", tmp_path / "gate.md"
    code = main(["gate", str(run), "--gates", str(gates_file(tmp_path, text)), "--junit", str(junit), "--markdown", str(md)])
    assert code == (0 if passes else 1)
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and int(suite.get("tests")) == len(suite.findall("testcase"))
    assert int(suite.get("failures")) == (0 if passes else 1)
    assert ("PASSED" if passes else "FAILED") in md.read_text()


def test_red_flag_veto_fails_a_flagged_candidate(tmp_path, capsys):
    results = copy.deepcopy(RESULTS)
    results["scores"]["candidate"]["red_flag_answers"] = 2
    assert main(["gate", str(make_run(tmp_path, results)), "--gates", str(gates_file(tmp_path, ""))]) == 1
    assert "red-flag veto" in capsys.readouterr().out


BAD_GATES = {
    "unknown metric": ('[minimum]\n"judge.acuracy" = 3\n', "unknown metric 'judge.acuracy'"),
    "unknown section": ("[thresholds]\nx = 1\n", "unknown setting 'thresholds'"),
    "prompt-set mismatch": ('prompt_set = "dental_implant_v2"\n', "gates expect prompt set 'dental_implant_v2'"),
    "unknown candidate": ('candidate = "nobody"\n', "candidate 'nobody' is not in run"),
    "uncalibrated judge": ("[calibration]\nmin_spearman = { accuracy = 0.5 }\n", "cannot gate: no calibration report"),
    "non-numeric bound": ('[minimum]\n"judge.overall" = "high"\n', "must be a number"),
}


@pytest.mark.parametrize("case", sorted(BAD_GATES))
def test_bad_gates_exit_2_with_one_line(case, tmp_path, capsys):
    text, expected = BAD_GATES[case]
    code = main(["gate", str(make_run(tmp_path, RESULTS)), "--gates", str(gates_file(tmp_path, text))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and "\n" not in err


def test_calibration_floor(tmp_path, capsys):
    run = make_run(tmp_path, RESULTS)
    report = {"judge": {"sha256": "j" * 64}, "rubric_sha256": "r" * 64,
              "agreement": {"accuracy": {"spearman": 0.42}}, "sensitivity": {"independent": {"off_topic": {"pass_rate": 0.99}}}}
    calibration = tmp_path / "outputs" / "calibration"
    calibration.mkdir(parents=True)
    (calibration / "reference.json").write_text(json.dumps(report))
    ok = gates_file(tmp_path, "[calibration]\nmin_spearman = { accuracy = 0.4 }\nmin_sensitivity = { off_topic = 0.95 }\n")
    assert main(["gate", str(run), "--gates", str(ok)]) == 0
    strict = gates_file(tmp_path, "[calibration]\nmin_spearman = { accuracy = 0.5 }\n")
    assert main(["gate", str(run), "--gates", str(strict)]) == 2
    assert "judge reference cannot gate: calibration spearman accuracy is 0.42 (floor 0.5)" in capsys.readouterr().err


def test_run_with_gate_end_to_end(tmp_path, outputs, capsys):
    answers = tmp_path / "a.jsonl"
    answers.write_text("".join(json.dumps({"id": i, "answer": f"Answer about {i}."}) + "\n"
                               for i in ("t-psel-1", "t-psel-2", "t-comp-1")))
    config = write_config(tmp_path / "run.toml", {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs), "limit": 3},
                          [{"name": "base", "source": f"answers:{answers}"}, {"name": "candidate", "source": f"answers:{answers}"}])
    strict = gates_file(tmp_path, 'candidate = "candidate"\n[minimum]\n"judge.overall" = 4.5\n[paired]\n"judge.overall" = -0.5\n')
    junit = tmp_path / "junit.xml"
    assert main(["run", "--config", str(config), "--gate", str(strict), "--junit", str(junit)]) == 1
    names = [case.get("name") for case in ET.parse(junit).getroot().findall("testcase")]
    assert any(n.startswith("judge.overall >= 4.5") for n in names) and any("CI low of candidate - base" in n for n in names)
    bad = gates_file(tmp_path, '[minimum]\n"judge.nope" = 1\n')
    assert main(["run", "--config", str(config), "--gate", str(bad)]) == 2  # refused before any work
