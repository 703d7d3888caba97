"""LLM judges over any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, `transformers serve`).

`ask_all` is the shared engine: requests fan out behind a semaphore; transport faults
(429, 5xx, timeouts, refused connections) are retried with backoff by the openai client
itself, and a judge still down after that raises JudgeUnavailable, while every result
already handed to `on_result` stays stored. A reply that cannot be parsed gets at most
`parse_retries` corrective retries and is then recorded as unscored (never as a 1).
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .parsing import ReplyError, parse_reply
from .prompting import render_rubric_prompt, template_sha256
from .rubric import Rubric
from .types import Verdict, unscored

T = TypeVar("T")


class JudgeUnavailable(RuntimeError):
    """The endpoint stayed down (or refused us) after the client's retries."""


@dataclass(frozen=True)
class EndpointJudgeConfig:
    model: str
    base_url: str
    api_key_env: str = "OPENAI_API_KEY"  # the variable's name is recorded; its value never is
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 3
    parse_retries: int = 2
    temperature: float = 0.0
    seed: int = 0
    max_tokens: int = 600
    template: str = "rubric_judge.jinja"

    @property
    def identity(self) -> dict[str, Any]:
        """What makes this judge's verdicts differ from another's (part of the cache key)."""
        return {"kind": "openai", "model": self.model, "base_url": self.base_url.rstrip("/"),
                "temperature": self.temperature, "seed": self.seed, "max_tokens": self.max_tokens,
                "template_sha256": template_sha256(self.template)}


@dataclass(frozen=True)
class Ask:
    key: str
    prompt: str
    seed_offset: int = 0  # repeat index: k samples of one prompt differ by seed


@dataclass(frozen=True)
class Answered:
    """A parsed reply, or the reason there is none."""

    value: Any | None
    model: str
    raw: str
    error: str | None = None


FIX_REPLY = "Your reply could not be used ({reason}). Reply again with only the JSON object in the required shape."


async def _ask_all(config: EndpointJudgeConfig, asks: Sequence[Ask], parse: Callable[[str, str], T],
                   on_result: Callable[[str, Answered], None], progress: Any) -> None:
    import openai

    client = openai.AsyncOpenAI(
        base_url=config.base_url, api_key=os.environ.get(config.api_key_env) or "EMPTY",
        timeout=config.timeout, max_retries=config.max_retries,
    )
    gate = asyncio.Semaphore(config.concurrency)

    async def one(ask: Ask) -> None:
        messages: list[dict[str, str]] = [{"role": "user", "content": ask.prompt}]
        reason, text, model = "", "", config.model
        result: Answered | None = None
        async with gate:
            for attempt in range(1 + config.parse_retries):
                try:
                    reply = await client.chat.completions.create(
                        model=config.model, messages=messages, temperature=config.temperature,
                        seed=config.seed + ask.seed_offset + attempt, max_tokens=config.max_tokens,
                    )
                except openai.BadRequestError as exc:  # this prompt, not the judge: record and go on
                    result = Answered(None, model, "", f"endpoint refused the request: {exc.message[:200]}")
                    break
                except (ValueError, openai.APIResponseValidationError) as exc:  # a 200 with a body that is not a reply
                    reason = f"malformed response body ({type(exc).__name__})"
                    continue
                model = reply.model or config.model
                text = (reply.choices[0].message.content or "") if reply.choices else ""
                try:
                    result = Answered(parse(ask.key, text), model, text[:2000])
                    break
                except ReplyError as exc:
                    reason = str(exc)
                    messages = messages[:1] + [{"role": "assistant", "content": text},
                                               {"role": "user", "content": FIX_REPLY.format(reason=reason)}]
        if result is None:
            result = Answered(None, model, text[:2000], f"unparseable after {1 + config.parse_retries} tries: {reason}")
        on_result(ask.key, result)
        if progress is not None:
            progress.update(1)

    tasks = [asyncio.create_task(one(a)) for a in asks]
    try:
        await asyncio.gather(*tasks)
    except (openai.APIConnectionError, openai.APITimeoutError, openai.APIStatusError) as exc:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        status = getattr(exc, "status_code", None)
        detail = f"HTTP {status}" if status else type(exc).__name__
        raise JudgeUnavailable(f"judge endpoint {config.base_url} ({config.model}) failed after retries: {detail}") from None
    finally:
        await client.close()


def ask_all(config: EndpointJudgeConfig, asks: Sequence[Ask], parse: Callable[[str, str], T],
            on_result: Callable[[str, Answered], None], description: str = "judging") -> None:
    from tqdm.auto import tqdm

    with tqdm(total=len(asks), desc=description, unit="request", disable=None) as progress:
        asyncio.run(_ask_all(config, asks, parse, on_result, progress))


@dataclass(frozen=True)
class JudgeRequest:
    key: str  # the judgment's cache key
    item: dict[str, Any]  # PromptItem.to_dict()
    answer: str
    sample: int = 0  # repeat index (k samples per item)


def judge_with_endpoint(config: EndpointJudgeConfig, rubric: Rubric, requests: Sequence[JudgeRequest],
                        on_verdict: Callable[[str, Verdict], None], description: str = "judging") -> None:
    """The rubric judge: one verdict per request, handed to `on_verdict` as it arrives."""
    items = {r.key: r.item for r in requests}

    def parse(key: str, text: str) -> Any:
        item = items[key]
        return parse_reply(text, rubric.dimension_names, len(item.get("key_points", ())), len(item.get("red_flags", ())))

    def to_verdict(key: str, answered: Answered) -> None:
        if answered.value is None:
            on_verdict(key, unscored(answered.error or "no reply", answered.model, answered.raw))
            return
        parsed = answered.value
        on_verdict(key, Verdict(parsed.scores, parsed.rationales, parsed.key_points, parsed.red_flags,
                                judge_model=answered.model, raw_reply=answered.raw))

    asks = [Ask(r.key, render_rubric_prompt(r.item, r.answer, rubric, config.template), r.sample) for r in requests]
    ask_all(config, asks, parse, to_verdict, description)
