"""Faults between the harness and a real judge endpoint (a fault-injecting proxy in front of a
real `transformers serve`), and two runs sharing one store: bounded retries, clean failures,
no hang, nothing lost or duplicated."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

from benchmark.cli import main

from .conftest import REPO, SMALL_PROMPTS, write_config
from .faultproxy import FaultProxy

PLANTED = "sk-dentbench-judge-key-planted-9876543210"


def _judge_config(tmp_path, outputs, url, model, **judge):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"id": i, "answer": f"An answer about {i}."}) + "\n"
                               for i in ("t-psel-1", "t-psel-2")))
    path = write_config(tmp_path / "run.toml", {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs), "limit": 2},
                        [{"name": "clinic", "source": f"answers:{answers}"}])
    settings = {"kind": "openai", "model": model, "base_url": url, "max_tokens": 12, "parse_retries": 1,
                "concurrency": 1, "timeout": 90.0, "max_retries": 2, "api_key_env": "DENTBENCH_JUDGE_KEY", **judge}
    path.write_text(path.read_text() + "\n[judge]\n" + "".join(
        f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}\n" for k, v in settings.items()))
    return path


def _judgments(outputs):
    with sqlite3.connect(outputs / "dentbench.sqlite") as db:
        return [json.loads(r[0]) for r in db.execute("SELECT verdict_json FROM judgments")]


def test_rate_limits_are_retried_with_backoff_and_the_key_stays_secret(tmp_path, outputs, served_model, capsys, monkeypatch):
    url, model, _ = served_model
    monkeypatch.setenv("DENTBENCH_JUDGE_KEY", PLANTED)
    with FaultProxy(url.removesuffix("/v1"), ["429", "429"]) as proxy:
        assert main(["run", "--config", str(_judge_config(tmp_path, outputs, proxy.url, model))]) == 0
    assert proxy.seen[:3] == ["429", "429", "pass"] and len(_judgments(outputs)) == 2
    for path in outputs.rglob("*"):  # the judge key is in no output of the run
        if path.is_file() and "models" not in path.parts:
            assert PLANTED.encode() not in path.read_bytes(), path
    assert PLANTED not in capsys.readouterr().out


def test_server_errors_fail_cleanly_with_exit_3(tmp_path, outputs, served_model, capsys):
    url, model, _ = served_model
    with FaultProxy(url.removesuffix("/v1"), [], default="500") as proxy:
        code = main(["run", "--config", str(_judge_config(tmp_path, outputs, proxy.url, model))])
    err = capsys.readouterr().err
    assert code == 3 and "HTTP 500" in err and "Traceback" not in err
    assert len(proxy.seen) == 3  # one try plus max_retries = 2, then it stops: bounded


def test_malformed_bodies_become_unscored_not_crashes(tmp_path, outputs, served_model, capsys):
    url, model, _ = served_model
    with FaultProxy(url.removesuffix("/v1"), [], default="malformed") as proxy:
        assert main(["run", "--config", str(_judge_config(tmp_path, outputs, proxy.url, model))]) == 0
    verdicts = _judgments(outputs)
    assert len(verdicts) == 2 and all(v["scores"] is None for v in verdicts)
    assert all("malformed response body" in v["unscored_reason"] for v in verdicts)
    assert len(proxy.seen) == 4  # 2 answers x (1 try + 1 corrective retry)


def test_slow_judge_times_out_instead_of_hanging(tmp_path, outputs, served_model, capsys):
    url, model, _ = served_model
    started = time.time()
    with FaultProxy(url.removesuffix("/v1"), [], default="slow", slow_seconds=6) as proxy:
        code = main(["run", "--config", str(_judge_config(tmp_path, outputs, proxy.url, model, timeout=1.0, max_retries=1))])
    assert code == 3 and "APITimeoutError" in capsys.readouterr().err
    assert time.time() - started < 60 and len(proxy.seen) == 2


def test_two_runs_share_one_store_without_loss_or_duplicates(tmp_path, outputs, adapters):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    configs = []
    for index, adapter in enumerate(adapters):
        configs.append(write_config(tmp_path / f"run{index}.toml",
                                    {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs), "max_new_tokens": 8,
                                     "batch_size": 1},
                                    [{"name": "base", "source": "embedded:smollm2-135m-instruct"},
                                     {"name": f"adapter{index}", "source": str(adapter)}]))
    runs = [subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", "--config", str(c)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in configs]
    errors = [run.communicate(timeout=600)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [e.splitlines()[:1] for e in errors]
    with sqlite3.connect(outputs / "dentbench.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        answers = db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM answers").fetchone()
        runs_indexed = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert answers == (18, 18)  # base 6 (shared by both runs) + 6 per adapter: none lost, none twice
    assert runs_indexed == 2
