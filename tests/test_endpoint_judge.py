"""The LLM judge path against a real `transformers serve` on loopback (the embedded 135M model
answers judge prompts with junk: exactly what the parser and the unscored path must survive)."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

from benchmark.cli import main

from .conftest import REPO, count_rows, SMALL_PROMPTS, free_port, start_server, stop_server, write_config


def _requests(log):
    return log.read_text().count('"POST /v1/chat/completions HTTP/1.1" 200')


def _answers_file(tmp_path):
    texts = {
        "t-psel-1": "Yes, usually, if your diabetes is well controlled; your dentist will check your HbA1c first.",
        "t-psel-2": "Yes. Smoking raises the risk of implant failure and bone loss; stopping helps.",
        "t-comp-1": "Bleeding is a sign of peri-implant mucositis; book a check-up soon.",
        "t-comp-2": "Bleeding or suppuration on probing, deeper pockets and bone loss beyond remodelling.",
        "t-main-1": "Every three to six months, depending on your risk.",
        "t-main-2": "Yes, alongside brushing and interdental brushes.",
    }
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps({"id": k, "answer": v}) + "\n" for k, v in texts.items()))
    return path


def _config(tmp_path, outputs, url, model, **judge):
    answers = _answers_file(tmp_path)
    settings = {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs)}
    path = write_config(tmp_path / "run.toml", settings, [
        {"name": "clinic_a", "source": f"answers:{answers}"},
    ])
    judge = {"kind": "openai", "model": model, "base_url": url, "max_tokens": 24, "parse_retries": 1,
             "concurrency": 2, "timeout": 60.0, "max_retries": 1, **judge}
    lines = ["", "[judge]"] + [f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}" for k, v in judge.items()]
    path.write_text(path.read_text() + "\n".join(lines) + "\n")
    return path


def _results(outputs):
    run = sorted(p for p in (outputs / "runs").iterdir() if not p.name.startswith("."))[-1]
    return json.loads((run / "results.json").read_text()), [json.loads(x) for x in (run / "judgments.jsonl").read_text().splitlines()]


def test_junk_replies_become_unscored_and_the_cache_prevents_repeat_calls(tmp_path, outputs, served_model, capsys):
    url, model, log = served_model
    config = _config(tmp_path, outputs, url, model)
    before = _requests(log)
    assert main(["run", "--config", str(config)]) == 0
    made = _requests(log) - before
    results, judgments = _results(outputs)
    assert len(judgments) == 6
    unscored = [j for j in judgments if j["scores"] is None]
    assert unscored, "a 135M judge should produce at least some unusable replies"
    assert all(j["unscored_reason"] for j in unscored)
    assert all(j["judge_model"] for j in judgments)  # the model id the endpoint reported
    scores = results["scores"]["clinic_a"]
    assert scores["unscored"] == len(unscored)  # counted apart, never as a score of 1
    assert scores["judgments"] == 6
    assert 6 <= made <= 12  # one try each, plus at most one corrective retry
    assert main(["run", "--config", str(config)]) == 0
    assert _requests(log) - before == made  # rerun: every judgment came from the store


def test_rubric_change_rejudges_without_regenerating(tmp_path, outputs, capsys):
    rubric = tmp_path / "rubric.toml"
    rubric.write_text((REPO / "judges/rubrics/dental_v1.toml").read_text())
    settings = {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs), "limit": 2, "max_new_tokens": 8}
    config = write_config(tmp_path / "run.toml", settings, [{"name": "base", "source": "embedded:smollm2-135m-instruct"}])
    config.write_text(config.read_text() + f'\n[judge]\nrubric = "{rubric}"\n')
    assert main(["run", "--config", str(config)]) == 0
    first, _ = _results(outputs)
    rubric.write_text(rubric.read_text().replace("Rude, dismissive", "Rude or dismissive"))
    assert main(["run", "--config", str(config)]) == 0
    second, _ = _results(outputs)
    assert second["contestants"][0]["generated"] == 0  # no regeneration
    assert second["judge"]["rubric_sha256"] != first["judge"]["rubric_sha256"]
    with sqlite3.connect(outputs / "dentbench.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0] == 4  # 2 answers x 2 rubrics


def test_judge_stopped_mid_run_keeps_judgments_and_the_rerun_completes(tmp_path, outputs, embedded_folder):
    port = free_port()
    log = tmp_path / "serve.log"
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    server = start_server(embedded_folder, port, log, cache)
    url = f"http://127.0.0.1:{port}/v1"
    config = _config(tmp_path, outputs, url, str(embedded_folder), concurrency=1, max_tokens=48, parse_retries=0,
                     timeout=20.0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", "--config", str(config)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = outputs / "dentbench.sqlite"
    kept = 0
    deadline = time.time() + 180
    try:
        while time.time() < deadline and run.poll() is None:
            if store.exists():
                kept = count_rows(store, "judgments")
                if kept >= 2:
                    break
            time.sleep(0.1)
        stop_server(server)  # the judge goes away mid-run
        _, err = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
        if server.poll() is None:
            stop_server(server)
    assert run.returncode == 3, err
    assert "judge endpoint" in err and "kept in the store, rerun to finish" in err and "Traceback" not in err
    with sqlite3.connect(store) as db:
        kept = db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
    assert 2 <= kept < 6
    assert not [p for p in (outputs / "runs").iterdir() if not p.name.startswith(".")]  # no half-made run dir

    server = start_server(embedded_folder, port, log, cache)
    try:
        before = _requests(log)
        assert main(["run", "--config", str(config)]) == 0
        assert _requests(log) - before == 6 - kept  # only the missing ones were asked
    finally:
        stop_server(server)
    _, judgments = _results(outputs)
    assert len(judgments) == 6 and len({j["answer_key"] for j in judgments}) == 6
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0] == 6  # each exactly once


def test_pairwise_panel_and_repeats(tmp_path, outputs, served_model, capsys):
    url, model, log = served_model
    answers = _answers_file(tmp_path)
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"id": json.loads(line)["id"], "answer": "Please ask your dentist."}) + "\n"
                             for line in answers.read_text().splitlines()))
    config = write_config(tmp_path / "run.toml", {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs), "limit": 3}, [
        {"name": "clinic_a", "source": f"answers:{answers}"},
        {"name": "terse", "source": f"answers:{other}"},
    ])
    config.write_text(config.read_text() + (
        f'\n[judge]\nkind = "openai"\nmodel = "{model}"\nbase_url = "{url}"\nmax_tokens = 16\nparse_retries = 0\n'
        f'concurrency = 4\nrepeats = 2\ntemperature = 0.7\npairwise_baseline = "terse"\n'
        f'[[judge.panel]]\nmodel = "{model}"\nbase_url = "{url.replace("127.0.0.1", "localhost")}"\n'
    ))
    before = _requests(log)
    assert main(["run", "--config", str(config)]) == 0
    # 6 answers x 2 judges x 2 samples, plus 3 prompts x 2 orders for clinic_a against terse
    assert _requests(log) - before == 6 * 2 * 2 + 3 * 2
    results, judgments = _results(outputs)
    assert len(judgments) == 24 and {j["judge"] for j in judgments} == {f"openai:{model}", f"openai:{model}#2"}
    assert {j["sample"] for j in judgments} == {0, 1}
    pairwise = results["judge"]["pairwise"]["clinic_a"]
    assert pairwise["baseline"] == "terse" and pairwise["n"] == 3
    assert pairwise["wins"] + pairwise["ties"] + pairwise["losses"] + pairwise["unscored"] == 3
    assert pairwise["mean_words_candidate"] is None or pairwise["mean_words_candidate"] > pairwise["mean_words_baseline"]
    assert set(results["judge"]["repeat_spread"]) == {"tone", "accuracy", "terminology"}
    assert set(results["judge"]["panel_alpha"]) == {"tone", "accuracy", "terminology"}
    assert "terse" not in results["judge"]["pairwise"]

