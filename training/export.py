"""Merge an adapter into its unquantised base and export it (safetensors, Ollama, GGUF).

Merging happens in 16-bit (or fp32) on the original weights, never on the 4-bit ones:
merging into a quantised base bakes the quantisation error of every layer into the adapter's
delta, and the merged model would no longer be the base the adapter was trained against.
No Unsloth here: plain transformers + PEFT, so a merge is exactly base + B·A·scale.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .config import TrainingError
from .formats import INSTRUCTION_TEMPLATE

MERGE_RECORD = "merge.json"
DTYPES = ("bfloat16", "float16", "float32")
CONVERTER = "convert_hf_to_gguf.py"


def merge_adapter(base_folder: Path, adapter_folder: Path, out: Path, *, dtype: str = "bfloat16",
                  record: dict[str, Any] | None = None) -> Path:
    """Write base + adapter as one full model folder (safetensors), atomically."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise TrainingError(f"export: dtype must be one of {', '.join(DTYPES)}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(base_folder, dtype=getattr(torch, dtype), device_map=device)
    model = PeftModel.from_pretrained(model, str(adapter_folder)).merge_and_unload()
    tokenizer_source = adapter_folder if (adapter_folder / "tokenizer_config.json").is_file() else base_folder
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / MERGE_RECORD).write_text(json.dumps({"dtype": dtype, **(record or {})}, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def ollama_modelfile(weights: str, fmt: str, eos_token: str | None, system: str | None = None) -> str:
    """A Modelfile whose prompt template is the one the adapter was trained on.

    For the instruction format the template is the seed's text, and generation stops where a
    new "### Instruction" would begin. For chat-template training Ollama reads the template
    from the tokenizer it imports, which is the one training used."""
    lines = [f"FROM {weights}", ""]
    if fmt == "instruction":
        template = INSTRUCTION_TEMPLATE.format(question="{{ .Prompt }}") + "\n"
        lines += [f'TEMPLATE """{template}"""', 'PARAMETER stop "### Instruction"']
        if eos_token:
            lines.append(f"PARAMETER stop {json.dumps(eos_token)}")
    else:
        lines.append("# chat_template training: Ollama takes the template from the imported tokenizer")
    if system:
        lines.append(f"SYSTEM {json.dumps(system)}")
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"


def find_converter(llama_cpp_dir: str | None) -> Path | None:
    """llama.cpp's HF-to-GGUF converter: --llama-cpp DIR, $LLAMA_CPP_DIR, or on PATH."""
    for folder in (llama_cpp_dir, os.environ.get("LLAMA_CPP_DIR")):
        if folder and (Path(folder) / CONVERTER).is_file():
            return Path(folder) / CONVERTER
    found = shutil.which(CONVERTER)
    return Path(found) if found else None


def convert_gguf(converter: Path, merged: Path, out: Path, outtype: str = "f16") -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    command = [sys.executable, str(converter), str(merged), "--outfile", str(partial), "--outtype", outtype]
    result = subprocess.run(command, capture_output=True, text=True)  # noqa: S603  (no shell; our own paths)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TrainingError(f"export: llama.cpp's converter failed ({tail[0][:200]})")
    os.replace(partial, out)
    return out
