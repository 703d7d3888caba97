"""Real PEFT LoRA adapters with non-zero weights, for harness tests and benchmarks.

PEFT initialises B to zero, so a fresh adapter is a no-op and would make every
"adapter answers differ" check vacuous. These adapters are small random nudges:
the text stays language, but differs from the base's.
"""
from __future__ import annotations

import json
from pathlib import Path


def make_random_adapter(
    base_folder: str | Path,
    out: str | Path,
    seed: int,
    r: int = 8,
    target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
    scale: float = 0.05,
    base_source: str | None = None,
) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_folder)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(target_modules), init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(scale)
    out = Path(out)
    peft_model.save_pretrained(out)
    if base_source:
        (out / "training.json").write_text(json.dumps({"base_source": base_source}))
    return out
