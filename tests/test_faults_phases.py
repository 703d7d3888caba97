"""Faults in the later phases of a run, with real components (the embedded model, a real
`transformers serve`, SQLite): SIGKILL during judging, during lm-eval and during report writing;
a full disk; a judge that refuses one request (HTTP 400).

Each kill lands at a known point, not a lucky moment: the fault proxy holds a request until the
test has killed the run (judging, lm-eval), or the report step blocks reading a FIFO the test
placed where it looks for calibration reports (report writing). After each kill: the store
passes `PRAGMA integrity_check`, no run folder exists (at most a hidden staging folder, which
the rerun ignores), and the rerun completes with every judgment and task result exactly once.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from benchmark.cli import main

from .conftest import REPO, SMALL_PROMPTS, count_rows, write_config
from .faultproxy import FaultProxy

PROMPT_IDS = [json.loads(line)["id"] for line in SMALL_PROMPTS.read_text().splitlines()]


def _answers(tmp_path: Path, name: str = "answers.jsonl", words: int = 0) -> Path:
    path = tmp_path / name
    filler = " ".join(f"implant{n}" for n in range(words))
    path.write_text("".join(json.dumps({"id": i, "answer": f"An answer about {i}. {filler}".strip()}) + "\n"
                            for i in PROMPT_IDS))
    return path


def _with_section(path: Path, section: str, settings: dict) -> Path:
    def value(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    path.write_text(path.read_text() + f"\n[{section}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in settings.items()))
    return path


def _judge(url: str, model: str, **settings) -> dict:
    # 4 tokens: the 135M judge's replies are junk anyway (unscored), and each token costs on 2 CPU cores
    return {"kind": "openai", "model": model, "base_url": url, "max_tokens": 4, "parse_retries": 0,
            "concurrency": 1, "timeout": 60.0, "max_retries": 0, **settings}


def _start(config: Path) -> subprocess.Popen:
    """`dentbench run` in its own process (to be killed); its stderr goes to run.err beside the config."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with (config.parent / "run.err").open("w") as err:
        return subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", "--config", str(config)], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)


def _wait_for(proc: subprocess.Popen, ready, what: str, config: Path, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if ready():
            return
        time.sleep(0.05)
    err = (config.parent / "run.err").read_text()[-2000:]
    raise AssertionError(f"never reached {what} (exit {proc.poll()}): {err}")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)  # no handler runs: the hard case
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _rows(store: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(store, timeout=30)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _assert_consistent_after_kill(outputs: Path) -> None:
    """The store is sound and the killed run left no run folder (hidden staging folders aside)."""
    assert _rows(outputs / "dentbench.sqlite", "PRAGMA integrity_check") == [("ok",)]
    runs = outputs / "runs"
    assert not runs.exists() or not [p.name for p in runs.iterdir() if not p.name.startswith(".")]
    assert _rows(outputs / "dentbench.sqlite", "SELECT COUNT(*) FROM runs") == [(0,)]


def _run_dirs(outputs: Path) -> list[Path]:
    return sorted(p for p in (outputs / "runs").iterdir() if not p.name.startswith("."))


def _complete_run_dir(run_dir: Path) -> dict:
    """Every file of a finished run folder is whole: JSON parses, JSONL rows parse, the report ends."""
    for name in ("manifest.json", "results.json", "answers.jsonl", "report.html", "summary.md"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "report.html").read_text().rstrip().endswith("</html>")
    for path in run_dir.glob("*.jsonl"):
        assert path.read_text().endswith("\n")
        [json.loads(line) for line in path.read_text().splitlines()]
    assert not list(run_dir.glob(".*"))  # no temporary file of an atomic write
    return json.loads((run_dir / "results.json").read_text())


def test_sigkill_during_judging_keeps_judgments_and_the_rerun_asks_only_for_the_rest(tmp_path, outputs, served_model):
    url, model, _ = served_model
    with FaultProxy(url.removesuffix("/v1"), ["pass"], default="hold") as proxy:
        settings = {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs), "limit": 3}
        config = write_config(tmp_path / "run.toml", settings,
                              [{"name": "clinic", "source": f"answers:{_answers(tmp_path)}"}])
        _with_section(config, "judge", _judge(proxy.url, model))
        store = outputs / "dentbench.sqlite"
        run = _start(config)
        try:  # one verdict stored, the second request held at the proxy: the run is mid-judging
            _wait_for(run, lambda: proxy.held.is_set() and count_rows(store, "judgments") == 1,
                      "the second judge request", config)
            _kill(run)
        finally:
            if run.poll() is None:
                run.kill()
        _assert_consistent_after_kill(outputs)
        assert _rows(store, "SELECT COUNT(*) FROM answers") == [(3,)]
        kept = _rows(store, "SELECT key, verdict_json, created_at FROM judgments")
        assert len(kept) == 1

        proxy.default = "pass"
        proxy.release()
        asked = len(proxy.seen)
        assert main(["run", "--config", str(config)]) == 0
        assert len(proxy.seen) - asked == 2  # only the two missing judgments were asked for, not all three
    judgments = _rows(store, "SELECT key, answer_key, verdict_json, created_at FROM judgments")
    assert len(judgments) == 3 and len({j[1] for j in judgments}) == 3  # each answer judged exactly once
    assert set(kept) <= {(k, v, t) for k, _, v, t in judgments}  # the kept verdicts, untouched
    (run_dir,) = _run_dirs(outputs)
    results = _complete_run_dir(run_dir)
    rows = [json.loads(line) for line in (run_dir / "judgments.jsonl").read_text().splitlines()]
    assert sorted(r["prompt_id"] for r in rows) == sorted(PROMPT_IDS[:3])
    assert results["scores"]["clinic"]["judgments"] == 3


def test_sigkill_during_lm_eval_keeps_task_results_and_the_rerun_completes_each_once(tmp_path, outputs, served_model,
                                                                                      monkeypatch):
    monkeypatch.chdir(REPO)  # the MCQ data path is the shipped data/dental_mcq.jsonl
    url, model, _ = served_model
    store = outputs / "dentbench.sqlite"
    with FaultProxy(url.removesuffix("/v1"), [], default="hold") as proxy:
        # the embedded model runs dental_implant_mcq (and its generative twin) in-process and commits;
        # then lm-eval asks the endpoint contestant its first item, and the proxy holds that request.
        # fp32: the same lm-eval path as 4-bit, without bitsandbytes' slow CPU fallback
        settings = {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs), "limit": 1, "max_new_tokens": 4,
                    "concurrency": 1, "precision": "fp32"}
        config = write_config(tmp_path / "run.toml", settings, [
            {"name": "base", "source": "embedded:smollm2-135m-instruct"},
            {"name": "served", "source": f"openai:{model}@{proxy.url}"},
        ])
        _with_section(config, "lm_eval", {"tasks": ["dental_implant_mcq", "dental_implant_mcq_gen"], "limit": 1,
                                          "batch_size": 1})
        run = _start(config)
        try:
            _wait_for(run, lambda: proxy.held.is_set() and count_rows(store, "task_results") == 2,
                      "the endpoint contestant's lm-eval", config)
            _kill(run)
        finally:
            if run.poll() is None:
                run.kill()
        _assert_consistent_after_kill(outputs)
        kept = _rows(store, "SELECT key, model_identity, task, result_json, created_at FROM task_results")
        assert sorted(r[2] for r in kept) == ["dental_implant_mcq", "dental_implant_mcq_gen"]  # the base's, whole
        assert all("metrics" in json.loads(r[3]) for r in kept)
        assert _rows(store, "SELECT COUNT(*) FROM answers") == [(1,)]  # the endpoint's answer comes after its lm-eval

        proxy.default = "pass"
        proxy.release()
        asked = len(proxy.seen)
        assert main(["run", "--config", str(config)]) == 0
        assert len(proxy.seen) - asked == 1 + 1  # only the endpoint's generative item and its answer
    results = _rows(store, "SELECT key, model_identity, task, result_json, created_at FROM task_results")
    assert len(results) == len({(r[1], r[2]) for r in results}) == 4  # 2 contestants x 2 tasks, each once
    assert set(kept) <= set(results)  # the killed run's results, untouched
    (run_dir,) = _run_dirs(outputs)
    lm_eval = _complete_run_dir(run_dir)["lm_eval"]
    assert 0 <= lm_eval["base"]["dental_implant_mcq.acc"]["value"] <= 1
    assert 0 <= lm_eval["served"]["dental_implant_mcq_gen.exact_match,letter"]["value"] <= 1
    assert "log-likelihood task" in lm_eval["served"]["dental_implant_mcq"]["skipped"]


def test_sigkill_during_report_writing_leaves_no_run_folder_and_the_rerun_writes_a_whole_one(tmp_path, outputs):
    # The report step reads outputs/calibration/*.json; a FIFO there blocks it (a real blocking read)
    # after manifest, answers, results and judgments are staged and before report.html exists.
    (outputs / "calibration").mkdir()
    fifo = outputs / "calibration" / "held.json"
    os.mkfifo(fifo)
    config = write_config(tmp_path / "run.toml", {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs)},
                          [{"name": "clinic", "source": f"answers:{_answers(tmp_path)}"}])  # the reference judge
    store = outputs / "dentbench.sqlite"
    run = _start(config)
    writer = None

    def reading_the_fifo() -> bool:
        nonlocal writer
        if not list((outputs / "runs").glob(".staging-*")):
            return False
        try:  # succeeds only while the run has the FIFO open for reading
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return False
        return True

    try:
        _wait_for(run, reading_the_fifo, "the report step", config)
        _kill(run)  # killed inside write_run_report, the writer end still open: it was blocked in read()
    finally:
        if writer is not None:
            os.close(writer)
        if run.poll() is None:
            run.kill()
    _assert_consistent_after_kill(outputs)
    (staging,) = (outputs / "runs").glob(".staging-*")
    staged = sorted(p.name for p in staging.iterdir())
    assert staged == ["answers.jsonl", "judgments.jsonl", "manifest.json", "results.json"]  # no report, no temp file
    for name in ("answers.jsonl", "judgments.jsonl"):  # what was staged is whole, never truncated
        assert len([json.loads(line) for line in (staging / name).read_text().splitlines()]) == 6
    kept = _rows(store, "SELECT key, verdict_json, created_at FROM judgments")
    assert len(kept) == 6

    fifo.unlink()
    assert main(["run", "--config", str(config)]) == 0
    (run_dir,) = _run_dirs(outputs)  # the staging folder of the killed run is ignored
    results = _complete_run_dir(run_dir)
    assert results["contestants"][0]["answers"] == 6 and results["contestants"][0]["generated"] == 0  # from the store
    assert results["scores"]["clinic"]["judgments"] == 6
    assert sorted(_rows(store, "SELECT key, verdict_json, created_at FROM judgments")) == sorted(kept)  # none re-judged
    assert _rows(store, "SELECT run_id FROM runs") == [(run_dir.name,)]
    assert staging.name.removeprefix(".staging-") not in (outputs / "leaderboard.html").read_text()


# Disk full, for real: RLIMIT_FSIZE caps every file the run writes (SIGXFSZ ignored, so a write past
# the cap fails with EFBIG as on a full disk), set in the child before dentbench starts.
LIMITED_RUN = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv.pop(1)),) * 2); "
               "runpy.run_module('benchmark.cli', run_name='__main__', alter_sys=True)")


def _run_with_file_size_limit(config: Path, limit: int) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", LIMITED_RUN, str(limit), "run", "--config", str(config)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("dentbench:")]
    assert "Traceback" not in done.stderr and len(errors) == 1, done.stderr[-3000:]
    return done.returncode, errors[0]


def _files(outputs: Path) -> dict[str, bytes]:
    return {str(p.relative_to(outputs)): p.read_bytes() for p in outputs.rglob("*")
            if p.is_file() and "models" not in p.parts and not p.name.startswith("dentbench.sqlite")}


def test_disk_full_is_one_line_with_exit_3_and_loses_nothing_committed(tmp_path, outputs):
    long_answers = _answers(tmp_path, "clinic.jsonl", words=2000)  # ~18 KB each: the run folder gets large
    config = write_config(tmp_path / "run.toml", {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs)},
                          [{"name": "clinic", "source": f"answers:{long_answers}"}])
    assert main(["run", "--config", str(config)]) == 0
    store = outputs / "dentbench.sqlite"
    first = {t: _rows(store, f"SELECT * FROM {t} ORDER BY key") for t in ("answers", "judgments")}
    before = _files(outputs)

    config = write_config(tmp_path / "run.toml", {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs)}, [
        {"name": "clinic", "source": f"answers:{long_answers}"},
        {"name": "terse", "source": f"answers:{_answers(tmp_path, 'terse.jsonl')}"},
    ])
    # 1. the disk fills while terse's answers and judgments are being committed (the WAL stops at 48 KB)
    code, error = _run_with_file_size_limit(config, 48 * 1024)
    assert code == 3 and error.startswith(f"dentbench: error: {store}: cannot write to the store (")
    assert "everything committed before is kept" in error
    assert _rows(store, "PRAGMA integrity_check") == [("ok",)]
    for table, rows in first.items():  # the first run's rows, untouched
        assert set(rows) <= set(_rows(store, f"SELECT * FROM {table}")), table
    kept = _rows(store, "SELECT * FROM judgments")
    assert len(first["judgments"]) <= len(kept) < 12  # stopped before all of terse's judgments were in
    assert _files(outputs) == before  # no run folder, no staging folder, no temporary file
    assert not list((outputs / "runs").glob(".staging-*"))

    # 2. the store has room, the run folder does not (the staged answers.jsonl is over 100 KB)
    code, error = _run_with_file_size_limit(config, 100 * 1024)
    assert code == 3 and "/runs/.staging-" in error and "answers.jsonl: cannot write (File too large)" in error
    assert "the answers and judgments are kept in the store, rerun to write the run folder" in error
    assert _rows(store, "PRAGMA integrity_check") == [("ok",)]
    judged = _rows(store, "SELECT * FROM judgments")
    assert len(judged) == 12 and set(kept) <= set(judged)
    assert _files(outputs) == before
    assert not list((outputs / "runs").glob(".staging-*"))

    # 3. space again: the rerun redoes nothing and writes the whole run folder
    assert main(["run", "--config", str(config)]) == 0
    assert sorted(_rows(store, "SELECT * FROM judgments")) == sorted(judged)
    assert _rows(store, "SELECT COUNT(*) FROM answers") == [(12,)]
    results = _complete_run_dir(_run_dirs(outputs)[-1])
    assert [c["generated"] for c in results["contestants"]] == [0, 0]
    assert [s["judgments"] for s in results["scores"].values()] == [6, 6]


def test_judge_refusing_one_request_leaves_that_judgment_unscored_and_the_run_goes_on(tmp_path, outputs,
                                                                                       served_model):
    url, model, _ = served_model
    settings = {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs), "limit": 2}
    config = write_config(tmp_path / "run.toml", settings, [{"name": "clinic", "source": f"answers:{_answers(tmp_path)}"}])
    with FaultProxy(url.removesuffix("/v1"), ["400"]) as proxy:
        _with_section(config, "judge", _judge(proxy.url, model, max_retries=2))
        assert main(["run", "--config", str(config)]) == 0
    assert proxy.seen == ["400", "pass"]  # the refusal is not retried, and the run goes on after it
    (run_dir,) = _run_dirs(outputs)
    judgments = {j["prompt_id"]: j for j in map(json.loads, (run_dir / "judgments.jsonl").read_text().splitlines())}
    refused = judgments.pop(PROMPT_IDS[0])  # concurrency 1: the first request is the first prompt's
    assert refused["scores"] is None and refused["unscored_reason"].startswith("endpoint refused")
    assert "prompt too long for this judge" in refused["unscored_reason"]  # the endpoint's own message
    assert set(judgments) == {PROMPT_IDS[1]}
    assert all(not (j["unscored_reason"] or "").startswith("endpoint refused") for j in judgments.values())
    assert all(j["raw_reply"] for j in judgments.values())  # answered by the real server
    results = _complete_run_dir(run_dir)["scores"]["clinic"]
    assert results["judgments"] == 2 and results["unscored"] >= 1
