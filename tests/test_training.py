"""Two-stage LoRA training with Unsloth on the embedded SmolLM2 (real training, a few steps).

Training runs in child processes, as the CLI runs it, so Unsloth's patches never reach the
test process (whose generation must stay the benchmark's plain transformers path)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from safetensors.torch import load_file

from .conftest import REPO

EMBEDDED = "embedded:smollm2-135m-instruct"
FAST = ["--max-seq-length", "256", "--batch-size", "4", "--grad-accum", "1", "--no-progress"]


def dentbench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def subset(source: str, out: Path, rows: int) -> Path:
    lines = (REPO / source).read_text(encoding="utf-8").splitlines()[:rows]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def lora_tensors(folder: Path) -> dict:
    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, models_dir, embedded_folder) -> Path:
    root = tmp_path_factory.mktemp("training")
    (root / "outputs" / "models").mkdir(parents=True)
    shutil.copytree(embedded_folder, root / "outputs" / "models" / embedded_folder.name)
    subset("data/stage1_med_dialog.jsonl", root / "stage1.jsonl", 12)
    subset("data/stage2_implantation_data.jsonl", root / "stage2.jsonl", 12)
    return root


def train_args(workspace: Path, stage: str, output: Path, *extra: str) -> list[str]:
    config = f"configs/train_{stage}_embedded.toml"
    return ["train", stage, "--config", config, "--data", str(workspace / f"{stage}.jsonl"), "--output", str(output),
            "--output-dir", str(workspace / "outputs"), *FAST, *extra]


@pytest.fixture(scope="module")
def stage1(workspace) -> Path:
    out = workspace / "stage1"
    result = dentbench(*train_args(workspace, "stage1", out, "--max-steps", "6", "--learning-rate", "2e-3"))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def stage2(workspace, stage1) -> Path:
    out = workspace / "stage2"
    result = dentbench(*train_args(workspace, "stage2", out, "--init-adapter", str(stage1), "--max-steps", "3"))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_stage1_lowers_the_loss_and_records_its_provenance(stage1, workspace):
    record = json.loads((stage1 / "training.json").read_text())
    losses = [p["loss"] for p in record["loss_curve"]]
    assert [p["step"] for p in record["loss_curve"]] == list(range(1, 7))
    # 12 rows, batch 4: steps 4-6 see the rows of steps 1-3 again, after learning from them
    assert sum(losses[3:]) < sum(losses[:3]), losses
    assert record["base_source"] == EMBEDDED and record["stage"] == "stage1" and record["global_step"] == 6
    data = record["data_files"][0]
    assert data["rows"] == 12 and Path(data["path"]) == (workspace / "stage1.jsonl").resolve()
    assert record["hyperparameters"]["lora"]["r"] == 16 and record["hyperparameters"]["learning_rate"] == 2e-3
    assert record["tokens_seen"] > 1000 and record["wall_seconds"] > 0
    assert {"unsloth", "trl", "peft", "transformers", "torch"} <= set(record["packages"])
    # loss only on the response: the prompt tokens of the first example are masked, EOS closes it
    assert record["first_example"]["prompt_tokens_masked"] > 10 and record["first_example"]["ends_with_eos"] == 1
    svg = ET.parse(stage1 / "loss.svg").getroot()
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}circle")) == 6
    # PEFT starts B at zero: non-zero B means the weights were trained
    weights = lora_tensors(stage1)
    b_norms = [float(t.float().norm()) for k, t in weights.items() if "lora_B" in k]
    assert len(b_norms) == 30 * 7 and min(b_norms) > 0  # every linear layer of every block
    assert not any(stage1.parent.glob(".stage1.work"))  # checkpoints are dropped once the adapter is published


def test_trained_adapter_reloads_and_answers_differently(stage1, embedded_folder):
    from benchmark.generate import GenerationRow, generate_rows, render_prompt
    from benchmark.loading import attach_adapter, load_base
    from benchmark.records import GenerationConfig

    gen = GenerationConfig(max_new_tokens=24, chat_format="instruction")
    base = load_base(embedded_folder, "4bit")
    attach_adapter(base, "stage1", stage1)
    questions = ["My implant crown feels loose when I chew. What should I do?",
                 "How long does a dental implant take to heal before the crown goes on?"]
    out: dict[str, str] = {}
    rows = [GenerationRow(f"{who}-{i}", adapter, render_prompt(base.tokenizer, q, gen))
            for who, adapter in (("tuned", "stage1"), ("base", None)) for i, q in enumerate(questions)]
    generate_rows(base, rows, gen, 4, lambda batch: out.update({r.key: r.text for r in batch}))
    assert all(out[f"tuned-{i}"] for i in range(2))
    assert [out[f"tuned-{i}"] for i in range(2)] != [out[f"base-{i}"] for i in range(2)]


def test_stage2_trains_the_stage1_adapter_further(stage1, stage2, workspace):
    from benchmark.store import Store
    from benchmark.trainplan import adapter_identity

    record = json.loads((stage2 / "training.json").read_text())
    with Store(workspace / "outputs" / "dentbench.sqlite") as store:
        expected = adapter_identity(stage1, EMBEDDED, workspace / "outputs" / "models", store)
    assert record["init_adapter"] == str(stage1) and record["init_adapter_identity"] == expected
    assert record["stage2_mode"] == "continue" and record["base_source"] == EMBEDDED
    # the gradient reached every stage 1 tensor (a frozen adapter would give zero and stop the run)
    before, after = lora_tensors(stage1), lora_tensors(stage2)
    assert record["first_step_lora_grad_norm"] > 0 and record["lora_tensors_with_grad"] == len(before)
    assert before.keys() == after.keys()
    changed = sum(not before[k].equal(after[k]) for k in before)
    assert changed == len(before)


def test_an_unchanged_rerun_is_skipped(stage1, workspace):
    stamp = (stage1 / "adapter_model.safetensors").stat().st_mtime_ns
    result = dentbench(*train_args(workspace, "stage1", stage1, "--max-steps", "6", "--learning-rate", "2e-3"))
    assert result.returncode == 0 and "up to date" in result.stdout
    assert (stage1 / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    other = dentbench(*train_args(workspace, "stage1", stage1, "--max-steps", "7", "--learning-rate", "2e-3"))
    assert other.returncode == 2 and "--force" in other.stderr


def test_malformed_row_names_file_and_line(workspace, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": "d"}\n{"prompt": "e"}\n')
    out = tmp_path / "never"
    result = dentbench(*train_args(workspace, "stage1", out)[:4], "--data", str(bad), "--output", str(out),
                       "--output-dir", str(workspace / "outputs"))
    assert result.returncode == 2
    assert f"{bad}:3: missing required field 'response'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_adapter_for_another_base_is_refused(workspace, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from training.synthetic import make_random_adapter

    other = tmp_path / "other-base"
    LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=4, vocab_size=49152)).save_pretrained(other)
    foreign = make_random_adapter(other, tmp_path / "foreign", seed=3)
    out = tmp_path / "s2"
    result = dentbench(*train_args(workspace, "stage2", out, "--init-adapter", str(foreign)))
    assert result.returncode == 2
    assert "does not fit base" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_killed_run_resumes_from_its_checkpoint(workspace):
    out = workspace / "resumed"
    args = train_args(workspace, "stage1", out, "--max-steps", "6", "--save-steps", "2", "--seed", "7")
    work = out.parent / f".{out.name}.work" / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.time() + 400
        while not (work / "checkpoint-2" / "trainer_state.json").is_file():
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.time() < deadline, "no checkpoint within the time limit"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()  # nothing half-published
    from training.engine import latest_checkpoint

    kept = int(latest_checkpoint(work).name.split("-")[1])
    assert kept in (2, 4)
    refused = dentbench(*args)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = dentbench(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((out / "training.json").read_text())
    assert record["resumed_from_step"] == kept and record["global_step"] == 6
    assert [p["step"] for p in record["loss_curve"]] == list(range(1, 7))


def test_export_merges_into_the_full_precision_base(stage1, workspace, embedded_folder, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmark.specs import parse_source

    merged, ollama = tmp_path / "merged", tmp_path / "ollama"
    result = dentbench("export", "--adapter", str(stage1), "--merged", str(merged), "--ollama", str(ollama),
                       "--dtype", "float32", "--output-dir", str(workspace / "outputs"))
    assert result.returncode == 0, result.stderr[-3000:]
    tokenizer = AutoTokenizer.from_pretrained(merged)
    ids = tokenizer("### Instruction:\nWhat is osseointegration?\n\n### Response:\n", return_tensors="pt")
    with torch.no_grad():
        reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(embedded_folder), str(stage1))
        want = reference(**ids).logits
        got = AutoModelForCausalLM.from_pretrained(merged)(**ids).logits
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(AutoModelForCausalLM.from_pretrained(embedded_folder)(**ids).logits, want, atol=1e-3)
    record = json.loads((merged / "merge.json").read_text())
    assert record["format"] == "instruction" and record["base_source"] == EMBEDDED
    # the benchmark prompts a merged model the way it was trained
    assert parse_source("m", str(merged)).chat_format == "instruction"
    modelfile = (ollama / "Modelfile").read_text()
    assert modelfile.startswith("FROM .\n")
    assert 'TEMPLATE """### Instruction:\n{{ .Prompt }}\n\n### Response:\n"""' in modelfile
    assert 'PARAMETER stop "### Instruction"' in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert (ollama / "model.safetensors").is_file()


def test_gguf_without_llama_cpp_is_one_clear_line(stage1, workspace, tmp_path):
    env_dir = os.environ.pop("LLAMA_CPP_DIR", None)
    try:
        result = dentbench("export", "--adapter", str(stage1), "--gguf", str(tmp_path / "m.gguf"),
                           "--output-dir", str(workspace / "outputs"))
    finally:
        if env_dir is not None:
            os.environ["LLAMA_CPP_DIR"] = env_dir
    assert result.returncode == 2 and "convert_hf_to_gguf.py" in result.stderr
    assert not list(tmp_path.iterdir())


def test_stage2_merged_mode_trains_a_fresh_adapter_on_base_plus_stage1(stage1, workspace):
    from benchmark.store import Store
    from benchmark.trainplan import adapter_identity

    out = workspace / "stage2-merged"
    result = dentbench(*train_args(workspace, "stage2", out, "--init-adapter", str(stage1), "--stage2-mode", "merged",
                                   "--max-steps", "2"))
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "training.json").read_text())
    merged = Path(record["base_source"])
    with Store(workspace / "outputs" / "dentbench.sqlite") as store:
        stage1_id = adapter_identity(stage1, EMBEDDED, workspace / "outputs" / "models", store)
    assert merged.parent == workspace / "outputs" / "models" and (merged / "model.safetensors").is_file()
    assert json.loads((merged / "merge.json").read_text())["adapter_identity"] == stage1_id
    assert record["stage2_mode"] == "merged" and record["init_adapter_identity"] == stage1_id
    # a fresh adapter: started from B = 0 (PEFT's init), so after 2 steps it is small but not stage 1's
    fresh, old = lora_tensors(out), lora_tensors(stage1)
    assert fresh.keys() == old.keys() and all(not fresh[k].equal(old[k]) for k in fresh)
    assert max(float(t.abs().max()) for k, t in fresh.items() if "lora_B" in k) > 0


def test_training_rows_match_what_the_benchmark_renders(embedded_folder):
    """Instruction rows carry exactly the benchmark's prompt; chat rows are conversational."""
    from transformers import AutoTokenizer

    from benchmark.generate import render_prompt
    from benchmark.records import GenerationConfig
    from training.engine import Example, build_rows, check_first_example
    from training.formats import INSTRUCTION_TEMPLATE

    tok = AutoTokenizer.from_pretrained(embedded_folder)
    question = "Can I have an implant if I smoke?"
    example = Example(INSTRUCTION_TEMPLATE.format(question=question), "Smoking raises the risk of failure.", "x:1")
    row = build_rows((example,), tok, "instruction")[0]
    assert row["prompt"] == render_prompt(tok, question, GenerationConfig(chat_format="instruction"))
    chat = build_rows((example,), tok, "chat_template")[0]
    assert chat["prompt"] == [{"role": "user", "content": question}]
    assert chat["completion"] == [{"role": "assistant", "content": example.response}]
    # the guard refuses the two silent failures: loss on the prompt, and a doubled BOS
    ids = tok(row["prompt"] + row["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    from training.config import TrainingError

    with pytest.raises(TrainingError, match="loss on the prompt"):
        check_first_example({"input_ids": ids, "labels": list(ids)}, tok)
    with pytest.raises(TrainingError, match="two BOS"):
        check_first_example({"input_ids": [tok.bos_token_id, *ids], "labels": [-100, -100, *ids[1:]]}, tok)
    good = check_first_example({"input_ids": ids, "labels": [-100] * 20 + ids[20:]}, tok)
    assert good == {"prompt_tokens_masked": 20, "tokens": len(ids), "ends_with_eos": 1}
