"""The LLM rubric judge over any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, `transformers serve`).

Transport faults (429, 5xx, timeouts, refused connections) are retried with backoff by
the openai client itself; a judge still down after that raises JudgeUnavailable, and
every verdict already handed to `on_verdict` stays stored. A reply that cannot be parsed
gets at most `parse_retries` corrective retries, then is recorded as unscored.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .parsing import ReplyError, parse_reply
from .prompting import render_rubric_prompt, template_sha256
from .rubric import Rubric
from .types import Verdict, unscored


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
class JudgeRequest:
    key: str  # the judgment's cache key
    item: dict[str, Any]  # PromptItem.to_dict()
    answer: str
    sample: int = 0  # repeat index (k samples per item)


FIX_REPLY = "Your reply could not be used ({reason}). Reply again with only the JSON object in the required shape."


async def _judge_all(config: EndpointJudgeConfig, rubric: Rubric, requests: Sequence[JudgeRequest],
                     on_verdict: Callable[[str, Verdict], None], progress: Any) -> None:
    import openai

    client = openai.AsyncOpenAI(
        base_url=config.base_url, api_key=os.environ.get(config.api_key_env) or "EMPTY",
        timeout=config.timeout, max_retries=config.max_retries,
    )
    gate = asyncio.Semaphore(config.concurrency)

    async def one(request: JudgeRequest) -> None:
        prompt = render_rubric_prompt(request.item, request.answer, rubric, config.template)
        messages: list[dict[str, str]] = [{"role": "user", "content": prompt}]
        n_points, n_flags = len(request.item.get("key_points", ())), len(request.item.get("red_flags", ()))
        reason, reply_text, model = "", "", config.model
        async with gate:
            for attempt in range(1 + config.parse_retries):
                try:
                    reply = await client.chat.completions.create(
                        model=config.model, messages=messages, temperature=config.temperature,
                        seed=config.seed + request.sample + attempt, max_tokens=config.max_tokens,
                    )
                except openai.BadRequestError as exc:  # this prompt, not the judge: record and go on
                    verdict = unscored(f"endpoint refused the request: {exc.message[:200]}", model)
                    break
                model = reply.model or config.model
                reply_text = reply.choices[0].message.content or "" if reply.choices else ""
                try:
                    parsed = parse_reply(reply_text, rubric.dimension_names, n_points, n_flags)
                except ReplyError as exc:
                    reason = str(exc)
                    messages = messages[:1] + [{"role": "assistant", "content": reply_text},
                                               {"role": "user", "content": FIX_REPLY.format(reason=reason)}]
                    continue
                verdict = Verdict(parsed.scores, parsed.rationales, parsed.key_points, parsed.red_flags,
                                  judge_model=model, raw_reply=reply_text[:2000])
                break
            else:
                verdict = unscored(f"unparseable after {1 + config.parse_retries} tries: {reason}", model, reply_text)
        on_verdict(request.key, verdict)
        if progress is not None:
            progress.update(1)

    tasks = [asyncio.create_task(one(r)) for r in requests]
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


def judge_with_endpoint(config: EndpointJudgeConfig, rubric: Rubric, requests: Sequence[JudgeRequest],
                        on_verdict: Callable[[str, Verdict], None], description: str = "judging") -> None:
    from tqdm.auto import tqdm

    with tqdm(total=len(requests), desc=description, unit="answer", disable=None) as progress:
        asyncio.run(_judge_all(config, rubric, requests, on_verdict, progress))
