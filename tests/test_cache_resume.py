"""The answer cache: reruns generate nothing, a changed adapter regenerates only itself,
and a run killed midway resumes with every answer present exactly once."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from benchmark.config import load_config
from benchmark.runner import run_benchmark

from .conftest import REPO, count_rows, SMALL_PROMPTS, make_adapter, write_config


def _config(tmp_path, outputs, adapters, **run):
    settings = {"prompts": str(SMALL_PROMPTS), "max_new_tokens": 12, "batch_size": 4, "output_dir": str(outputs), **run}
    contestants = [
        {"name": "base", "source": "embedded:smollm2-135m-instruct"},
        {"name": "a", "source": str(adapters[0])},
        {"name": "b", "source": str(adapters[1])},
    ]
    return write_config(tmp_path / "run.toml", settings, contestants)


def _generated(result):
    return {c.name: c.generated for c in result.contestants}


def test_second_run_generates_nothing_and_changed_adapter_regenerates_only_itself(tmp_path, outputs, adapters, embedded_folder):
    import shutil

    local = [tmp_path / "a", tmp_path / "b"]
    for src, dst in zip(adapters, local):
        shutil.copytree(src, dst)
    config = load_config(_config(tmp_path, outputs, local))
    first = run_benchmark(config)
    assert _generated(first) == {"base": 6, "a": 6, "b": 6}
    second = run_benchmark(config)
    assert _generated(second) == {"base": 0, "a": 0, "b": 0}
    assert [c.identity for c in second.contestants] == [c.identity for c in first.contestants]
    first_answers = (tmp_path / "outputs" / "runs" / first.run_id / "answers.jsonl").read_text().splitlines()
    second_answers = (tmp_path / "outputs" / "runs" / second.run_id / "answers.jsonl").read_text().splitlines()
    assert [json.loads(x)["text"] for x in first_answers] == [json.loads(x)["text"] for x in second_answers]

    shutil.rmtree(local[1])
    make_adapter(embedded_folder, local[1], seed=99)  # retrained in place: same path, new weights
    third = run_benchmark(config)
    assert _generated(third) == {"base": 0, "a": 0, "b": 6}
    assert third.contestants[2].identity != first.contestants[2].identity


def test_killed_run_resumes_with_each_answer_once(tmp_path, outputs, adapters):
    config = _config(tmp_path, outputs, adapters, batch_size=1, max_new_tokens=40)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", "run", "--config", str(config)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    store = outputs / "dentbench.sqlite"
    deadline = time.time() + 240
    kept = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            if store.exists():
                kept = count_rows(store, "answers")
                if kept >= 3:
                    break
            time.sleep(0.1)
        assert proc.poll() is None, f"run ended (code {proc.returncode}) before it could be killed; {kept} answers"
        proc.send_signal(signal.SIGKILL)  # no cleanup handlers run: the hard case
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(store, timeout=30) as db:
        kept = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]  # what the kill really left
    assert 3 <= kept < 18, kept
    assert not (outputs / "runs").exists() or not [p for p in (outputs / "runs").iterdir() if not p.name.startswith(".")]

    result = run_benchmark(load_config(config))
    with sqlite3.connect(store) as db:
        total = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    assert total == 18
    assert sum(c.generated for c in result.contestants) <= 18 - kept
    rows = [json.loads(x) for x in (outputs / "runs" / result.run_id / "answers.jsonl").read_text().splitlines()]
    pairs = [(r["contestant"], r["prompt_id"]) for r in rows]
    assert len(pairs) == len(set(pairs)) == 18


def test_sigint_ends_cleanly_with_a_summary(tmp_path, outputs, adapters):
    config = _config(tmp_path, outputs, adapters, batch_size=1, max_new_tokens=64)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # A shell starts background jobs with SIGINT ignored, and children inherit that: when the suite
    # itself runs in the background, a plain child would ignore our Ctrl-C. Restore it, as a terminal has.
    launcher = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "sys.argv = ['dentbench', *sys.argv[1:]]; runpy.run_module('benchmark.cli', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", launcher, "run", "--config", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = outputs / "dentbench.sqlite"
    deadline = time.time() + 240
    seen = []
    while time.time() < deadline and proc.poll() is None:
        seen.append(count_rows(store, "answers") if store.exists() else -1)
        if seen[-1] >= 2:
            break
        time.sleep(0.1)
    # an interrupt that lands after the run ended proves nothing: say what the polls saw
    assert proc.poll() is None, f"the run ended before the interrupt; answers seen by the polls: {sorted(set(seen))}"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; the store keeps" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err

