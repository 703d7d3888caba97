import time

from benchmark.embedded import MARKER, gguf_path, materialise


def test_embedded_model_materialises_offline_and_is_reused(embedded_folder, models_dir):
    assert (embedded_folder / "model.safetensors").is_file()
    assert (embedded_folder / "tokenizer.json").is_file()
    marker_mtime = (embedded_folder / MARKER).stat().st_mtime_ns
    weights_mtime = (embedded_folder / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    again = materialise("smollm2-135m-instruct", models_dir)
    assert again == embedded_folder
    assert time.perf_counter() - start < 2.0  # reused, not reconverted (conversion takes ~20 s)
    assert (embedded_folder / MARKER).stat().st_mtime_ns == marker_mtime
    assert (embedded_folder / "model.safetensors").stat().st_mtime_ns == weights_mtime


def test_converted_model_loads_and_answers(embedded_folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(embedded_folder)
    tokenizer = AutoTokenizer.from_pretrained(embedded_folder)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is a dental implant?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(text.split()) >= 3
    # the GGUF's tokenizer says eos = <|im_start|>; the converted folder must agree with the model
    # (training appends tokenizer.eos_token to every answer; generation stops on config's eos)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == model.config.eos_token_id == 2
    assert tokenizer.apply_chat_template([{"role": "assistant", "content": "x"}], tokenize=False).rstrip().endswith(tokenizer.eos_token)


def test_gguf_is_found_in_the_package():
    path = gguf_path("smollm2-135m-instruct")
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000
