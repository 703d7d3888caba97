"""Endpoint, replayed-answer and --adapter contestants, end to end through `dentbench run`."""
from __future__ import annotations

import json

from benchmark.cli import main
from benchmark.config import load_config
from benchmark.runner import run_benchmark

from .conftest import SMALL_PROMPTS, write_config

PLANTED_KEY = "sk-dentbench-planted-0123456789abcdef"


def _requests(log):
    return log.read_text().count('"POST /v1/chat/completions HTTP/1.1" 200')


def test_endpoint_contestant_generates_caches_and_never_writes_the_key(tmp_path, outputs, served_model, monkeypatch):
    url, model, log = served_model
    monkeypatch.setenv("DENTBENCH_TEST_KEY", PLANTED_KEY)
    config = write_config(
        tmp_path / "run.toml",
        {"prompts": str(SMALL_PROMPTS), "max_new_tokens": 12, "output_dir": str(outputs), "concurrency": 3},
        [{"name": "served", "source": f"openai:{model}@{url}", "api_key_env": "DENTBENCH_TEST_KEY"}],
    )
    before = _requests(log)
    first = run_benchmark(load_config(config))
    assert _requests(log) - before == 6
    summary = first.contestants[0]
    assert summary.kind == "openai" and summary.answers == 6 and summary.generated == 6
    rows = [json.loads(x) for x in (outputs / "runs" / first.run_id / "answers.jsonl").read_text().splitlines()]
    assert all(r["text"].strip() for r in rows) and all(r["new_tokens"] > 0 for r in rows)

    second = run_benchmark(load_config(config))
    assert second.contestants[0].generated == 0 and _requests(log) - before == 6  # the cache answered

    for path in outputs.rglob("*"):
        if path.is_file() and "models" not in path.parts:
            assert PLANTED_KEY.encode() not in path.read_bytes(), path


def test_endpoint_down_is_an_infrastructure_error(tmp_path, outputs, capsys):
    from .conftest import free_port

    config = write_config(
        tmp_path / "run.toml",
        {"prompts": str(SMALL_PROMPTS), "max_new_tokens": 4, "output_dir": str(outputs), "request_timeout": 2.0},
        [{"name": "gone", "source": f"openai:m@http://127.0.0.1:{free_port()}/v1"}],
    )
    code = main(["run", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 3 and "contestant 'gone': endpoint" in err and "failed after retries" in err


def test_replayed_answers_cover_a_subset(tmp_path, outputs):
    answers = tmp_path / "clinician.jsonl"
    answers.write_text(
        json.dumps({"id": "t-psel-1", "answer": "Usually yes, if your diabetes is well controlled."}) + "\n"
        + json.dumps({"id": "t-comp-1", "answer": "Bleeding is a warning sign; see your dentist."}) + "\n"
    )
    config = write_config(
        tmp_path / "run.toml",
        {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs)},
        [{"name": "clinician", "source": f"answers:{answers}"}],
    )
    result = run_benchmark(load_config(config))
    summary = result.contestants[0]
    assert (summary.answers, summary.missing) == (2, 4)
    rows = [json.loads(x) for x in (outputs / "runs" / result.run_id / "answers.jsonl").read_text().splitlines()]
    assert {r["prompt_id"]: r["text"] for r in rows}["t-comp-1"].startswith("Bleeding is a warning sign")


def test_adapter_flag_adds_the_candidate(tmp_path, outputs, adapters, capsys):
    config = write_config(
        tmp_path / "run.toml",
        {"prompts": str(SMALL_PROMPTS), "max_new_tokens": 8, "output_dir": str(outputs), "limit": 2},
        [{"name": "base", "source": "embedded:smollm2-135m-instruct"}],
    )
    assert main(["run", "--config", str(config), "--adapter", str(adapters[0])]) == 0
    assert "| candidate | adapter | 2 | 2 | 0 |" in capsys.readouterr().out
    manifest = json.loads(next((outputs / "runs").iterdir()).joinpath("manifest.json").read_text())
    candidate = [c for c in manifest["contestants"] if c["name"] == "candidate"][0]
    base = [c for c in manifest["contestants"] if c["name"] == "base"][0]
    assert candidate["base_identity"] == base["identity"]  # one shared load
    assert candidate["identity"] != base["identity"]
