"""Load a base model once (4-bit by default) and attach any number of LoRA adapters to it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DentbenchError
from .records import Precision

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in mixed-adapter batches


@dataclass
class LoadedBase:
    """A base model in memory with the adapters attached so far (mutable on purpose)."""

    model: Any
    tokenizer: Any
    folder: Path
    adapters: dict[str, str]  # adapter name -> folder

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_dtype(device: str) -> Any:
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # bf16 matmuls are slow on most CPUs


def load_base(folder: Path, precision: Precision = "4bit", *, trust_remote_code: bool = False) -> LoadedBase:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    device = pick_device()
    dtype = compute_dtype(device)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "device_map": {"": device}}
    if precision == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    elif precision == "8bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    elif precision in ("bf16", "fp32"):
        kwargs["dtype"] = torch.bfloat16 if precision == "bf16" else torch.float32
    else:
        raise DentbenchError(f"precision: {precision!r} is not one of 4bit, 8bit, bf16, fp32")
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"  # decoder-only batches pad on the left so answers start aligned
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    model.eval()
    return LoadedBase(model=model, tokenizer=tokenizer, folder=folder, adapters={})


def module_shapes(model: Any) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of every linear-like module: what a LoRA must match."""
    shapes = {}
    for name, module in model.named_modules():
        if hasattr(module, "in_features") and hasattr(module, "out_features"):
            shapes[name] = (int(module.in_features), int(module.out_features))
    return shapes


def base_module_shapes(folder: Path, trust_remote_code: bool = False) -> dict[str, tuple[int, int]]:
    """Module shapes from config.json alone, on the meta device: no weights read, no memory used."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return module_shapes(model)


def check_adapter_fits(shapes: dict[str, tuple[int, int]], base_name: str, adapter_folder: Path) -> None:
    """Refuse an adapter trained for another architecture with one line, before PEFT's wall of text."""
    from safetensors import SafetensorError, safe_open

    weights = adapter_folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise DentbenchError(f"{adapter_folder}: no adapter_model.safetensors")
    try:
        handle_cm = safe_open(str(weights), framework="pt")
    except (SafetensorError, OSError) as exc:
        raise DentbenchError(f"{weights}: unreadable adapter weights ({exc})") from None
    with handle_cm as handle:
        for key in handle.keys():
            if ".lora_A." not in key and ".lora_B." not in key:
                continue
            module = key.split(".lora_")[0].removeprefix("base_model.model.")
            if module not in shapes:
                raise DentbenchError(
                    f"{adapter_folder}: adapter does not fit base {base_name}: it targets module '{module}', which the base lacks"
                )
            fan_in, fan_out = shapes[module]
            shape = handle.get_slice(key).get_shape()
            got, want = (shape[1], fan_in) if ".lora_A." in key else (shape[0], fan_out)
            if got != want:
                raise DentbenchError(
                    f"{adapter_folder}: adapter does not fit base {base_name}: module '{module}' "
                    f"has {want} features, the adapter has {got}"
                )


def attach_adapter(base: LoadedBase, name: str, adapter_folder: Path) -> None:
    """Load a LoRA adapter onto the shared base under `name` (PEFT keeps several at once)."""
    from peft import PeftModel

    model = base.model.get_base_model() if hasattr(base.model, "get_base_model") else base.model
    check_adapter_fits(module_shapes(model), base.folder.name, adapter_folder)
    config = json.loads((adapter_folder / "adapter_config.json").read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise DentbenchError(f"{adapter_folder}: peft_type {config.get('peft_type')!r} is not supported (LoRA only)")
    if not base.adapters:
        base.model = PeftModel.from_pretrained(base.model, str(adapter_folder), adapter_name=name, is_trainable=False)
    else:
        base.model.load_adapter(str(adapter_folder), adapter_name=name, is_trainable=False)
    base.model.eval()
    base.adapters[name] = str(adapter_folder)
