"""Each bad input: exit 2, one line naming the file/line or setting, no run directory written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import DentbenchError

from .conftest import SMALL_PROMPTS, write_config

GOOD_ROW = json.loads(SMALL_PROMPTS.read_text().splitlines()[0])


def _run(capsys, config: Path, *extra: str) -> tuple[int, str]:
    code = main(["run", "--config", str(config), *extra])
    err = capsys.readouterr().err.strip()
    return code, err


def _no_run_written(outputs: Path) -> bool:
    runs = outputs / "runs"
    return not runs.exists() or not any(runs.iterdir())


def _embedded_config(tmp_path, outputs, prompts, contestants=None, **run):
    contestants = contestants or [{"name": "base", "source": "embedded:smollm2-135m-instruct"}]
    settings = {"prompts": str(prompts), "max_new_tokens": 4, "output_dir": str(outputs), **run}
    return write_config(tmp_path / "run.toml", settings, contestants)


BAD_PROMPT_FILES = {
    "bad json": ('{"id": "x", "question": "q", "reference": "r"}\n{"id": "y", "question": \n', ":2: invalid JSON"),
    "missing field": ('{"id": "x", "question": "q"}\n', ":1: missing required field 'reference'"),
    "wrong type": ('{"id": "x", "question": "q", "reference": "r", "key_points": "one"}\n', ":1: field 'key_points'"),
    "duplicate id": (
        '{"id": "x", "question": "q", "reference": "r"}\n{"id": "x", "question": "q2", "reference": "r2"}\n',
        ":2: duplicate id 'x' (first on line 1)",
    ),
    "empty": ("\n\n", ": file is empty"),
    "not an object": ('["id", "x"]\n', ":1: expected a JSON object"),
    "unknown field": ('{"id": "x", "question": "q", "reference": "r", "answer": "a"}\n', ":1: unknown field 'answer'"),
    "bad id": ('{"id": "../../etc", "question": "q", "reference": "r"}\n', ":1: field 'id'"),
    "bad seed prompt": ('{"prompt": "no markers", "response": "r"}\n', ":1: field 'prompt' is not in the"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROMPT_FILES))
def test_malformed_prompt_sets(case, tmp_path, outputs, capsys):
    content, expected = BAD_PROMPT_FILES[case]
    prompts = tmp_path / "bad.jsonl"
    prompts.write_text(content)
    code, err = _run(capsys, _embedded_config(tmp_path, outputs, prompts))
    assert code == 2
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"{prompts}{expected}" in err
    assert _no_run_written(outputs)


def test_invalid_utf8_names_the_line(tmp_path, outputs, capsys):
    prompts = tmp_path / "bad.jsonl"
    prompts.write_bytes(json.dumps(GOOD_ROW).encode() + b"\n" + b'{"id": "\xff"}\n')
    code, err = _run(capsys, _embedded_config(tmp_path, outputs, prompts))
    assert code == 2 and f"{prompts}:2: not valid UTF-8" in err


def test_a_50_mb_line_is_refused_quickly_without_reading_it_whole(tmp_path, outputs, capsys):
    import time
    import tracemalloc

    from benchmark.fileio import MAX_LINE_BYTES
    from benchmark.prompts import load_prompt_set

    prompts = tmp_path / "huge.jsonl"
    with prompts.open("wb") as handle:  # a valid row, then one row of 50 MB (a pasted blob)
        handle.write(json.dumps(GOOD_ROW).encode() + b"\n" + b'{"id": "huge", "question": "')
        for _ in range(50):
            handle.write(b"x" * 1_000_000)
        handle.write(b'", "reference": "r"}\n')
    assert prompts.stat().st_size > 50 * MAX_LINE_BYTES
    started = time.monotonic()
    code, err = _run(capsys, _embedded_config(tmp_path, outputs, prompts))
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err
    assert f"{prompts}:2: line is over the {MAX_LINE_BYTES:,}-byte limit" in err
    assert time.monotonic() - started < 10  # refused before any model loads
    assert _no_run_written(outputs) and not (outputs / "dentbench.sqlite").exists()

    tracemalloc.start()  # the reader holds at most about one line's limit, never the 50 MB line
    try:
        with pytest.raises(DentbenchError, match=":2: line is over"):
            load_prompt_set(prompts)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_LINE_BYTES, peak


def test_bom_and_crlf_are_accepted(tmp_path):
    from benchmark.prompts import load_prompt_set

    prompts = tmp_path / "windows.jsonl"
    prompts.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD_ROW).encode() + b"\r\n")
    assert load_prompt_set(prompts).items[0].id == GOOD_ROW["id"]


def test_seed_format_is_accepted(tmp_path):
    from benchmark.prompts import load_prompt_set

    prompts = tmp_path / "seed.jsonl"
    row = {"prompt": "### Instruction:\nHow long do implants last?\n\n### Response:", "response": "Many decades."}
    prompts.write_text(json.dumps(row) + "\n")
    item = load_prompt_set(prompts).items[0]
    assert item.question == "How long do implants last?" and item.reference == "Many decades."
    assert item.id.startswith("seed-") and len(item.id) == 17


CONFIG_ERRORS = {
    "unknown run key": ("[run]\nprompts = 'x.jsonl'\nmax_tokens = 5\n", "unknown setting [run].max_tokens"),
    "unknown section": ("[grader]\nmodel = 'x'\n", "unknown section [grader]"),
    "wrong type": ("[run]\nmax_new_tokens = 'many'\n", "'max_new_tokens' must be int"),
    "bad precision": ("[run]\nprecision = '3bit'\n", "'precision' must be one of"),
    "bad toml": ("[run\n", "invalid TOML"),
    "contestant key": ("[[contestants]]\nname = 'a'\nsource = 'x'\nweights = 'y'\n", "unknown setting 'weights'"),
    "duplicate name": (
        "[[contestants]]\nname = 'a'\nsource = 'embedded:smollm2-135m-instruct'\n"
        "[[contestants]]\nname = 'a'\nsource = 'embedded:smollm2-135m-instruct'\n",
        "contestant name 'a' appears twice",
    ),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_config_errors(case, tmp_path, outputs, capsys):
    text, expected = CONFIG_ERRORS[case]
    config = tmp_path / "bad.toml"
    config.write_text(text)
    code, err = _run(capsys, config, "--output-dir", str(outputs))
    assert code == 2 and expected in err and str(config) in err
    assert _no_run_written(outputs)


def test_missing_config_file(tmp_path, capsys):
    code, err = _run(capsys, tmp_path / "nope.toml")
    assert code == 2 and "nope.toml: config file not found" in err


CONTESTANT_ERRORS = {
    "missing adapter folder": ("outputs/no_such_adapter", "model folder outputs/no_such_adapter not found"),
    "unknown embedded": ("embedded:gpt-5", "unknown embedded model 'embedded:gpt-5'"),
    "bad endpoint": ("openai:model-without-url", "is not openai:MODEL@http(s)://HOST/v1"),
    "bad name": ("embedded:smollm2-135m-instruct", "contestant name"),
}


@pytest.mark.parametrize("case", sorted(CONTESTANT_ERRORS))
def test_contestant_errors(case, tmp_path, outputs, capsys):
    source, expected = CONTESTANT_ERRORS[case]
    name = "../evil" if case == "bad name" else "c"
    config = _embedded_config(tmp_path, outputs, SMALL_PROMPTS, [{"name": name, "source": source}])
    code, err = _run(capsys, config)
    assert code == 2 and expected in err
    assert _no_run_written(outputs)


def test_model_folder_without_weights(tmp_path, outputs, capsys, embedded_folder):
    folder = tmp_path / "empty_model"
    folder.mkdir()
    (folder / "config.json").write_text((embedded_folder / "config.json").read_text())
    config = _embedded_config(tmp_path, outputs, SMALL_PROMPTS, [{"name": "c", "source": str(folder)}])
    code, err = _run(capsys, config)
    assert code == 2 and f"model folder {folder} has no weights" in err
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    code, err = _run(capsys, config)
    assert code == 2 and "pickles can run code on load, pass --allow-pickle" in err
    assert _no_run_written(outputs)


def test_adapter_for_another_base_is_refused_before_loading(tmp_path, outputs, capsys, embedded_folder):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    other = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, vocab_size=1000))
    adapter = tmp_path / "foreign_adapter"
    get_peft_model(other, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(adapter)
    config = _embedded_config(
        tmp_path, outputs, SMALL_PROMPTS,
        [{"name": "c", "source": str(adapter), "base": "embedded:smollm2-135m-instruct"}],
    )
    code, err = _run(capsys, config)
    assert code == 2
    assert "adapter does not fit base embedded:smollm2-135m-instruct" in err and "has 576 features, the adapter has 64" in err
    assert _no_run_written(outputs)
    assert not (outputs / "dentbench.sqlite").exists() or _answers_in_store(outputs) == 0


def _answers_in_store(outputs):
    import sqlite3

    with sqlite3.connect(outputs / "dentbench.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


def test_answers_file_with_unknown_id(tmp_path, outputs, capsys):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"id": "t-psel-1", "answer": "ok"}) + "\n" + json.dumps({"id": "zzz", "answer": "x"}) + "\n")
    config = _embedded_config(tmp_path, outputs, SMALL_PROMPTS, [{"name": "c", "source": f"answers:{answers}"}])
    code, err = _run(capsys, config)
    assert code == 2 and f"{answers}:2: id 'zzz' is not in prompt set prompts_small" in err
    assert _no_run_written(outputs)


def test_unwritable_output_dir(tmp_path, capsys):
    blocker = tmp_path / "file_not_dir"
    blocker.write_text("x")
    config = _embedded_config(tmp_path, blocker / "outputs", SMALL_PROMPTS)
    code, err = _run(capsys, config)
    assert code == 3 and "output_dir: cannot write to" in err


def test_debug_shows_the_traceback(tmp_path):
    from benchmark.errors import DentbenchError

    with pytest.raises(DentbenchError):
        main(["--debug", "run", "--config", str(tmp_path / "nope.toml")])
