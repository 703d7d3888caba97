"""Batched generation on one loaded base, switching adapters between batches.

Rows are sorted by prompt length so a batch wastes little on padding, padded on
the left so every row's answer starts at the same column, and each finished batch
is handed to `on_batch` (the store) before the next starts: a killed run keeps
every batch it finished.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import DentbenchError
from .loading import LoadedBase
from .records import INSTRUCTION_TEMPLATE, GenerationConfig

INSTRUCTION_STOP = "### Instruction"  # instruction-tuned adapters may start a new turn: cut it


@dataclass(frozen=True)
class GenerationRow:
    key: str
    adapter: str | None  # None: the base itself
    prompt_text: str  # fully rendered (chat template or instruction format applied)


@dataclass(frozen=True)
class GeneratedText:
    key: str
    text: str
    new_tokens: int
    seconds: float
    finish_reason: str


def render_prompt(tokenizer: Any, question: str, gen: GenerationConfig) -> str:
    """The exact text the model sees; it is part of the cache key."""
    if gen.chat_format == "instruction":
        bos = tokenizer.bos_token or ""
        return bos + INSTRUCTION_TEMPLATE.format(question=question)
    if not getattr(tokenizer, "chat_template", None):
        raise DentbenchError("chat_format: this tokenizer has no chat template; set chat_format = \"instruction\"")
    messages = [{"role": "user", "content": question}]
    if gen.system_prompt:
        messages.insert(0, {"role": "system", "content": gen.system_prompt})
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@contextlib.contextmanager
def active_adapter(base: LoadedBase, adapter: str | None) -> Iterator[None]:
    if not base.adapters:
        if adapter is not None:
            raise ValueError(f"adapter {adapter} is not attached")
        yield
    elif adapter is None:
        with base.model.disable_adapter():
            yield
    else:
        base.model.set_adapter(adapter)
        yield


def plan_batches(base: LoadedBase, rows: Sequence[GenerationRow], batch_size: int) -> list[list[GenerationRow]]:
    """One adapter per batch, longest prompts first (the slowest batches start while memory is free)."""
    lengths = {r.key: len(base.tokenizer(r.prompt_text, add_special_tokens=False)["input_ids"]) for r in rows}
    by_adapter: dict[str | None, list[GenerationRow]] = {}
    for row in rows:
        by_adapter.setdefault(row.adapter, []).append(row)
    batches = []
    for group in by_adapter.values():
        group.sort(key=lambda r: -lengths[r.key])
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return batches


def _count_new_tokens(ids: list[int], stop_ids: set[int]) -> tuple[int, str]:
    for index, token in enumerate(ids):
        if token in stop_ids:
            return index, "stop"
    return len(ids), "length"


def generate_batch(base: LoadedBase, batch: Sequence[GenerationRow], gen: GenerationConfig) -> list[GeneratedText]:
    import torch

    tokenizer, model = base.tokenizer, base.model
    encoded = tokenizer([r.prompt_text for r in batch], return_tensors="pt", padding=True, add_special_tokens=False)
    encoded = {k: v.to(base.device) for k, v in encoded.items()}
    stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    stop_ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    stop_ids.discard(None)
    sampling: dict[str, Any] = {"do_sample": False}
    if gen.do_sample:
        sampling = {"do_sample": True, "temperature": gen.temperature, "top_p": gen.top_p}
        torch.manual_seed(gen.seed)
    start = time.perf_counter()
    with torch.inference_mode(), active_adapter(base, batch[0].adapter):
        output = model.generate(
            **encoded,
            max_new_tokens=gen.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=sorted(stop_ids),
            **sampling,
        )
    seconds = time.perf_counter() - start
    new = output[:, encoded["input_ids"].shape[1] :].tolist()
    results = []
    for row, ids in zip(batch, new):
        count, reason = _count_new_tokens(ids, stop_ids)
        text = tokenizer.decode(ids[:count], skip_special_tokens=True)
        if INSTRUCTION_STOP in text:
            text, reason = text.split(INSTRUCTION_STOP, 1)[0], "stop"
        results.append(GeneratedText(row.key, text.strip(), count, seconds / len(batch), reason))
    return results


def generate_rows(
    base: LoadedBase,
    rows: Sequence[GenerationRow],
    gen: GenerationConfig,
    batch_size: int,
    on_batch: Callable[[list[GeneratedText]], None],
    description: str = "generating",
) -> None:
    from tqdm.auto import tqdm

    batches = plan_batches(base, rows, batch_size)
    tokens, seconds = 0, 0.0
    with tqdm(total=len(rows), desc=description, unit="answer", disable=None) as bar:
        for batch in batches:
            results = generate_batch(base, batch, gen)
            on_batch(results)
            tokens += sum(r.new_tokens for r in results)
            seconds += sum(r.seconds for r in results)
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{tokens / max(seconds, 1e-9):.1f}")
