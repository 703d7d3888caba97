"""Batched generation on one loaded base, adapters switched between batches or mixed within one.

Rows are sorted by prompt length so a batch wastes little on padding, padded on
the left so every row's answer starts at the same column. On a GPU a batch holds at
most `batch_size` rows and no more than a memory budget admits (KV cache and prefill
activations, estimated from the model config); on CPU `batch_size` alone decides.
Each finished batch is handed to `on_batch` (the store) before the next starts: a
killed run keeps every batch it finished.

Two switches, both measured in docs/PERFORMANCE.md (issue 8), both off by default:
- `mix_adapters`: rows of different adapters share a batch; PEFT applies each row's own
  adapter (`adapter_names`, "__base__" for the base). Same answers as per-adapter
  batches, but PEFT's mixed path about doubles the kernels of a decode step, which is
  bound by host-side work on a GPU: it pays only when contestants have few rows each.
- `engine="continuous"` (or DENTBENCH_GENERATION_ENGINE=continuous): transformers'
  continuous batching, greedy only, one adapter per call: no padding, a finished row
  frees its slot, less memory.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import DentbenchError
from .loading import BASE_ADAPTER, LoadedBase
from .records import INSTRUCTION_TEMPLATE, GenerationConfig

INSTRUCTION_STOP = "### Instruction"  # instruction-tuned adapters may start a new turn: cut it
# Peak GPU memory (torch's allocated bytes: weights + KV cache + activations) a run plans for.
# 18 GiB leaves room for the allocator's slack (measured: reserved about 2.6 GiB over allocated)
# and the CUDA context on a 24 GB card.
GPU_MEMORY_BUDGET_GIB = float(os.environ.get("DENTBENCH_GPU_MEMORY_GIB", "18"))
GENERATION_ENGINE = os.environ.get("DENTBENCH_GENERATION_ENGINE", "generate")  # or "continuous"


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
    token_ids: tuple[int, ...] = field(default=(), repr=False, compare=False)  # for checks; not stored


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


def token_bytes(config: Any, dtype_bytes: int = 2) -> tuple[int, int]:
    """(KV cache bytes a token keeps, activation bytes a prompt token needs during prefill)."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    kv = 2 * config.num_hidden_layers * kv_heads * head_dim * dtype_bytes
    act = (4 * getattr(config, "intermediate_size", 4 * config.hidden_size) + 4 * config.hidden_size) * dtype_bytes
    return kv, act


def row_bytes(config: Any, prompt_tokens: int, new_tokens: int, dtype_bytes: int = 2) -> int:
    """GPU memory one row of a batch needs at its peak: the larger of prefill (prompt KV plus the
    MLP activations of one layer, which dominate) and the end of decoding (the full KV cache)."""
    kv, act = token_bytes(config, dtype_bytes)
    vocab = (config.get_text_config() if hasattr(config, "get_text_config") else config).vocab_size
    logits = 4 * vocab * 4  # float32 logits and the processors' copies, per decode step
    return max(prompt_tokens * (kv + act), (prompt_tokens + new_tokens) * kv + logits)


def batch_memory_budget(base: LoadedBase) -> int | None:
    """Bytes a batch may use on the GPU beyond what is already allocated; None on CPU (no budget)."""
    import torch

    if base.device.type != "cuda":
        return None
    headroom = 1 << 30  # dequantised weight of the largest layer, allocator slack
    return max(0, int(GPU_MEMORY_BUDGET_GIB * (1 << 30)) - torch.cuda.memory_allocated(base.device) - headroom)


def plan_batches(
    base: LoadedBase,
    rows: Sequence[GenerationRow],
    batch_size: int,
    max_new_tokens: int = 0,
    memory_bytes: int | None = None,
    mix_adapters: bool = False,
) -> list[list[GenerationRow]]:
    """Longest prompts first (the slowest batches start while memory is free), one adapter per batch
    (or all adapters mixed with `mix_adapters=True`), each batch at most `batch_size` rows and,
    given `memory_bytes`, no more rows than fit in it at the batch's longest prompt."""
    lengths = {r.key: len(base.tokenizer(r.prompt_text, add_special_tokens=False)["input_ids"]) for r in rows}
    groups: dict[str | None, list[GenerationRow]] = {}
    for row in rows:
        groups.setdefault(row.adapter if not mix_adapters else "", []).append(row)
    config = base.model.config
    batches = []
    for group in groups.values():
        group.sort(key=lambda r: -lengths[r.key])  # stable: equal lengths keep contestant order
        start = 0
        while start < len(group):
            size = batch_size
            if memory_bytes is not None:
                size = min(size, max(1, memory_bytes // row_bytes(config, lengths[group[start].key], max_new_tokens)))
            batches.append(group[start : start + size])
            start += size
    return batches


def stop_token_ids(base: LoadedBase) -> set[int]:
    tokenizer, model = base.tokenizer, base.model
    stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    stop_ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    stop_ids.discard(None)
    return stop_ids


def decode_answer(tokenizer: Any, ids: list[int], stop_ids: set[int]) -> tuple[str, int, str]:
    """(text, new tokens, finish reason) of one row's generated ids."""
    count, reason = len(ids), "length"
    for index, token in enumerate(ids):
        if token in stop_ids:
            count, reason = index, "stop"
            break
    text = tokenizer.decode(ids[:count], skip_special_tokens=True)
    if INSTRUCTION_STOP in text:
        text, reason = text.split(INSTRUCTION_STOP, 1)[0], "stop"
    return text.strip(), count, reason


def generate_batch(
    base: LoadedBase, batch: Sequence[GenerationRow], gen: GenerationConfig, **generate_kwargs: Any
) -> list[GeneratedText]:
    """One model.generate call; rows of several adapters go through PEFT's mixed-adapter batches."""
    import torch

    tokenizer, model = base.tokenizer, base.model
    encoded = tokenizer([r.prompt_text for r in batch], return_tensors="pt", padding=True, add_special_tokens=False)
    encoded = {k: v.to(base.device) for k, v in encoded.items()}
    stop_ids = stop_token_ids(base)
    sampling: dict[str, Any] = {"do_sample": False}
    if gen.do_sample:
        sampling = {"do_sample": True, "temperature": gen.temperature, "top_p": gen.top_p}
        torch.manual_seed(gen.seed)
    adapters = {r.adapter for r in batch}
    if len(adapters) > 1:
        for name in adapters - {None}:
            if name not in base.adapters:
                raise ValueError(f"adapter {name} is not attached")
        generate_kwargs["adapter_names"] = [r.adapter or BASE_ADAPTER for r in batch]
        context: Any = contextlib.nullcontext()
    else:
        context = active_adapter(base, batch[0].adapter)
    start = time.perf_counter()
    with torch.inference_mode(), context:
        output = model.generate(
            **encoded,
            max_new_tokens=gen.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=sorted(stop_ids),
            **sampling,
            **generate_kwargs,
        )
    seconds = time.perf_counter() - start
    new = output[:, encoded["input_ids"].shape[1] :].tolist()
    results = []
    for row, ids in zip(batch, new):
        text, count, reason = decode_answer(tokenizer, ids, stop_ids)
        results.append(GeneratedText(row.key, text, count, seconds / len(batch), reason, tuple(ids[:count])))
    return results


def continuous_config(base: LoadedBase, inputs: list[list[int]], max_new_tokens: int) -> Any:
    """Paged KV cache sized to the memory budget (on a GPU) and CUDA graphs on."""
    from transformers import ContinuousBatchingConfig

    budget = batch_memory_budget(base)
    if budget is None:
        return ContinuousBatchingConfig()
    block, chunk = 256, 2048  # tokens a KV block holds; prompt tokens a forward pass takes at most
    kv, act = token_bytes(base.model.config)
    vocab = base.model.config.vocab_size
    kv_budget = max(block * kv, budget - chunk * (act + 4 * vocab * 4))
    needed = sum(-(-(len(ids) + max_new_tokens) // block) for ids in inputs)
    blocks = max(1, min(needed, kv_budget // (block * kv)))
    return ContinuousBatchingConfig(block_size=block, num_blocks=blocks, max_batch_tokens=chunk, use_cuda_graph=True)


def generate_continuous(
    base: LoadedBase, batch: Sequence[GenerationRow], gen: GenerationConfig
) -> list[GeneratedText]:
    """transformers' continuous batching for rows of one adapter: a paged KV cache without padding,
    a finished row frees its slot at once, decode steps replayed as CUDA graphs on a GPU. PEFT's
    mixed-adapter batches do not reach it, so one adapter (one generate_batch call) at a time; a new
    call captures its own graphs, so no graph of another adapter is ever replayed."""
    from transformers import GenerationConfig as HFGenerationConfig

    adapters = {r.adapter for r in batch}
    if len(adapters) != 1:
        raise ValueError("continuous batching takes rows of one adapter")
    tokenizer = base.tokenizer
    stop_ids = stop_token_ids(base)
    inputs = [tokenizer(r.prompt_text, add_special_tokens=False)["input_ids"] for r in batch]
    hf_gen = HFGenerationConfig(max_new_tokens=gen.max_new_tokens, do_sample=False, eos_token_id=sorted(stop_ids),
                                pad_token_id=tokenizer.pad_token_id)
    start = time.perf_counter()
    with active_adapter(base, batch[0].adapter):  # no inference_mode here: the loop runs in its own thread
        outputs = base.model.generate_batch(inputs=inputs, generation_config=hf_gen,
                                            continuous_batching_config=continuous_config(base, inputs, gen.max_new_tokens))
    seconds = time.perf_counter() - start
    ordered = list(outputs.values())  # generate_batch returns them in request order
    failed = [o.error for o in ordered if o.error] + ["missing"] * (len(batch) - len(ordered))
    if failed:
        raise RuntimeError(f"continuous batching: {len(failed)} of {len(batch)} requests failed: {failed[0]}")
    results = []
    for row, ids, out in zip(batch, inputs, ordered):
        if list(out.prompt_ids) != ids:
            raise RuntimeError("continuous batching returned answers out of order")
        generated = list(out.generated_tokens)
        text, count, reason = decode_answer(tokenizer, generated, stop_ids)
        results.append(GeneratedText(row.key, text, count, seconds / len(batch), reason, tuple(generated[:count])))
    return results


def generate_rows(
    base: LoadedBase,
    rows: Sequence[GenerationRow],
    gen: GenerationConfig,
    batch_size: int,
    on_batch: Callable[[list[GeneratedText]], None],
    description: str = "generating",
    *,
    mix_adapters: bool = False,
    memory_bytes: int | None | str = "auto",
    generate_kwargs: dict[str, Any] | None = None,
    engine: str | None = None,
) -> None:
    """Generate every row, in as few forward passes as `batch_size` and the memory budget allow.

    `memory_bytes`: "auto" (GPU: GPU_MEMORY_BUDGET_GIB less what is allocated; CPU: none), a number,
    or None (batch_size alone). `mix_adapters=True` puts rows of several adapters in one batch.
    `engine`: "generate" (padded batches through model.generate) or "continuous" (transformers'
    continuous batching, greedy only; `batch_size` rows of one adapter per call, KV cache sized by the
    budget); None: GENERATION_ENGINE.
    """
    from tqdm.auto import tqdm

    engine = engine or GENERATION_ENGINE
    if engine not in ("generate", "continuous"):
        raise DentbenchError(f"generation engine {engine!r} is not one of generate, continuous")
    continuous = engine == "continuous" and not gen.do_sample
    budget = batch_memory_budget(base) if memory_bytes == "auto" else memory_bytes
    assert budget is None or isinstance(budget, int)
    if continuous:
        batches = plan_batches(base, rows, batch_size, gen.max_new_tokens, None, mix_adapters=False)
    else:
        batches = plan_batches(base, rows, batch_size, gen.max_new_tokens, budget, mix_adapters)
    tokens, seconds = 0, 0.0
    with tqdm(total=len(rows), desc=description, unit="answer", disable=None) as bar:
        for batch in batches:
            if continuous:
                results = generate_continuous(base, batch, gen)
            else:
                results = generate_batch(base, batch, gen, **(generate_kwargs or {}))
            on_batch(results)
            tokens += sum(r.new_tokens for r in results)
            seconds += sum(r.seconds for r in results)
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{tokens / max(seconds, 1e-9):.1f}")
