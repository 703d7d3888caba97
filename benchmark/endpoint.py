"""Contestants behind an OpenAI-compatible endpoint (vLLM, Ollama, `transformers serve`, OpenAI).

Requests fan out concurrently behind a semaphore; retries with backoff on 429,
5xx and timeouts are the openai client's own. Each answer is stored as it
arrives, so an endpoint that dies mid-run costs only the answers in flight.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from .errors import InfrastructureError
from .generate import GeneratedText
from .records import GenerationConfig, ModelSpec
from .specs import api_key


async def _generate_async(
    spec: ModelSpec,
    jobs: Sequence[tuple[str, str]],
    gen: GenerationConfig,
    on_answer: Callable[[GeneratedText], None],
    concurrency: int,
    timeout: float,
    max_retries: int,
) -> None:
    import openai
    from tqdm.auto import tqdm

    client = openai.AsyncOpenAI(base_url=spec.location, api_key=api_key(spec), timeout=timeout, max_retries=max_retries)
    gate = asyncio.Semaphore(concurrency)

    async def one(key: str, question: str) -> None:
        messages = [{"role": "user", "content": question}]
        if gen.system_prompt:
            messages.insert(0, {"role": "system", "content": gen.system_prompt})
        async with gate:
            start = time.perf_counter()
            reply = await client.chat.completions.create(
                model=spec.endpoint_model or "",
                messages=messages,
                max_tokens=gen.max_new_tokens,
                temperature=gen.temperature if gen.do_sample else 0.0,
                top_p=gen.top_p,
                seed=gen.seed,
            )
        choice = reply.choices[0]
        tokens = reply.usage.completion_tokens if reply.usage else 0
        finish = "length" if choice.finish_reason == "length" else "stop"
        on_answer(GeneratedText(key, (choice.message.content or "").strip(), tokens, time.perf_counter() - start, finish))
        bar.update(1)

    with tqdm(total=len(jobs), desc=f"{spec.name} (endpoint)", unit="answer", disable=None) as bar:
        try:
            tasks = [asyncio.create_task(one(key, question)) for key, question in jobs]
            await asyncio.gather(*tasks)
        except (openai.APIConnectionError, openai.APITimeoutError, openai.APIStatusError, openai.APIResponseValidationError,
                ValueError) as exc:  # ValueError: a 200 whose body is not JSON
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise InfrastructureError(
                f"contestant '{spec.name}': endpoint {spec.location} failed after retries ({type(exc).__name__}); "
                "answers received so far are kept"
            ) from None
        finally:
            await client.close()


def generate_via_endpoint(
    spec: ModelSpec,
    jobs: Sequence[tuple[str, str]],
    gen: GenerationConfig,
    on_answer: Callable[[GeneratedText], None],
    *,
    concurrency: int = 8,
    timeout: float = 120.0,
    max_retries: int = 2,
) -> None:
    """jobs: (cache key, question) pairs still missing from the store."""
    asyncio.run(_generate_async(spec, jobs, gen, on_answer, concurrency, timeout, max_retries))
