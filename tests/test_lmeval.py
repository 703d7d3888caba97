"""lm-eval on the embedded model, offline: the dental MCQ task for the base and an adapter (the
adapter's numbers come from the adapter), unreachable tasks skipped with a reason, results in
results.json, and a clear error for an unknown task."""
from __future__ import annotations

import json
import sqlite3

from benchmark.cli import main
from benchmark.config import LmEvalSettings, load_config
from benchmark.lmeval import evaluate_loaded, prepare_tasks, task_manager
from benchmark.loading import attach_adapter, load_base
from benchmark.runner import run_benchmark

from .conftest import REPO, SMALL_PROMPTS, write_config


def _config(tmp_path, outputs, adapters, tasks, extra_contestants=()):
    path = write_config(tmp_path / "run.toml", {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs), "limit": 1,
                                                "max_new_tokens": 4}, [
        {"name": "base", "source": "embedded:smollm2-135m-instruct"},
        {"name": "adapted", "source": str(adapters[0])},
        *extra_contestants,
    ])
    path.write_text(path.read_text() + f"\n[lm_eval]\ntasks = {json.dumps(tasks)}\nlimit = 6\nbatch_size = 6\n")
    return path


def test_dental_mcq_for_base_and_adapter_with_skips(tmp_path, outputs, adapters, embedded_folder, monkeypatch):
    monkeypatch.chdir(REPO)  # the MCQ data path is the shipped data/dental_mcq.jsonl
    answers = tmp_path / "a.jsonl"
    answers.write_text(json.dumps({"id": "t-psel-1", "answer": "Yes."}) + "\n")
    config = _config(tmp_path, outputs, adapters, ["dental_implant_mcq", "medqa_4options"],
                     [{"name": "replayed", "source": f"answers:{answers}"}])
    result = run_benchmark(load_config(config))
    stored = json.loads((outputs / "runs" / result.run_id / "results.json").read_text())["lm_eval"]
    base, adapted = stored["base"], stored["adapted"]
    for metrics in (base, adapted):
        assert 0 <= metrics["dental_implant_mcq.acc"]["value"] <= 1
        assert metrics["dental_implant_mcq.acc"]["stderr"] > 0 and "dental_implant_mcq.acc_norm" in metrics
        assert "Hub" in metrics["medqa_4options"]["skipped"] or "Error" in metrics["medqa_4options"]["skipped"]
    assert "pre-generated answers" in stored["replayed"]["dental_implant_mcq"]["skipped"]

    # the adapter's numbers come from the adapter: equal to a separate base+adapter load
    alone = load_base(embedded_folder, "4bit")
    attach_adapter(alone, "only", adapters[0])
    settings = LmEvalSettings(tasks=("dental_implant_mcq",), limit=6, batch_size=6, enabled=True)
    direct = evaluate_loaded(alone, "only", ["dental_implant_mcq"], settings, task_manager(prepare_tasks()))
    assert direct["dental_implant_mcq"]["metrics"]["dental_implant_mcq.acc_norm"] == adapted["dental_implant_mcq.acc_norm"]
    plain = load_base(embedded_folder, "4bit")
    direct_base = evaluate_loaded(plain, None, ["dental_implant_mcq"], settings, task_manager(prepare_tasks()))
    assert direct_base["dental_implant_mcq"]["metrics"]["dental_implant_mcq.acc"] == base["dental_implant_mcq.acc"]

    def stamps():
        with sqlite3.connect(outputs / "dentbench.sqlite") as db:
            return dict(db.execute("SELECT key || task, created_at FROM task_results").fetchall())

    before = stamps()
    again = run_benchmark(load_config(config))  # results cached; failures (the unreachable task) retried
    after = stamps()
    assert len(before) == len(after) == 4 and before.keys() == after.keys()
    retried = {k for k in before if before[k] != after[k]}
    assert retried and all(k.endswith("medqa_4options") for k in retried) and len(retried) == 2
    assert again.lm_eval["adapted"] == result.lm_eval["adapted"]
    manifest = json.loads((outputs / "runs" / result.run_id / "manifest.json").read_text())
    assert manifest["lm_eval"]["version"] == "0.4.13" and "yaml_sha256" in manifest["lm_eval"]["tasks"]["dental_implant_mcq"]


def test_unknown_task_is_one_clear_line(tmp_path, outputs, adapters, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    config = _config(tmp_path, outputs, adapters, ["dental_implant_mcqq"])
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown lm-eval task 'dental_implant_mcqq'" in err and "\n" not in err
    assert not (outputs / "runs").exists() or not list((outputs / "runs").iterdir())


def test_lmeval_command_alone(tmp_path, outputs, adapters, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    config = _config(tmp_path, outputs, adapters, ["dental_implant_mcq_gen"])
    assert main(["lmeval", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "dental_implant_mcq_gen.exact_match,letter" in out
    assert list((outputs / "lmeval").glob("*.json"))


def test_endpoint_contestant_runs_generative_tasks_and_skips_loglikelihood(tmp_path, outputs, served_model, monkeypatch):
    monkeypatch.chdir(REPO)
    url, model, log = served_model
    config = write_config(tmp_path / "run.toml", {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs), "limit": 1,
                                                  "max_new_tokens": 8}, [
        {"name": "served", "source": f"openai:{model}@{url}"},
    ])
    config.write_text(config.read_text() + '\n[lm_eval]\ntasks = ["dental_implant_mcq_gen", "dental_implant_mcq"]\nlimit = 3\n')
    before = log.read_text().count("POST /v1/chat/completions")
    result = run_benchmark(load_config(config))
    served = result.lm_eval["served"]
    assert 0 <= served["dental_implant_mcq_gen.exact_match,letter"]["value"] <= 1
    assert "log-likelihood task" in served["dental_implant_mcq"]["skipped"]
    # 1 generated answer + 3 MCQ items, all through the real endpoint
    assert log.read_text().count("POST /v1/chat/completions") - before >= 4


def test_malformed_mcq_row_is_named_before_lm_eval(tmp_path, outputs, adapters, capsys, monkeypatch):
    (tmp_path / "data").mkdir()
    rows = (REPO / "data/dental_mcq.jsonl").read_text().splitlines()[:3]
    broken = json.loads(rows[1])
    broken["answer"] = 7
    (tmp_path / "data/dental_mcq.jsonl").write_text("\n".join([rows[0], json.dumps(broken), rows[2]]) + "\n")
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, outputs, adapters, ["dental_implant_mcq"])
    assert main(["run", "--config", str(config)]) == 2
    assert "data/dental_mcq.jsonl:2: answer: must be an integer index 0 to 3" in capsys.readouterr().err
