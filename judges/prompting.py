"""Render judge prompts from Jinja2 templates, with the answer fenced off as untrusted data.

The fence: marker lines carrying a nonce derived from the answer's own hash (so the
prompt is deterministic and cacheable, yet no answer can contain its own nonce), and
any marker-like text inside the answer is defused before rendering.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import jinja2

from .rubric import Rubric

TEMPLATES = Path(__file__).resolve().parent / "templates"
MARKER_LIKE = re.compile(r"<{2,}\s*(BEGIN|END)\s+UNTRUSTED", re.I)

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # a plain-text prompt, not HTML: the fence below is what protects it
    keep_trailing_newline=True,
)


def template_sha256(name: str) -> str:
    return hashlib.sha256((TEMPLATES / name).read_bytes()).hexdigest()


def nonce_for(*texts: str) -> str:
    return hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16]


def defuse(answer: str) -> str:
    """Break anything that looks like our markers, so an answer cannot close its own fence."""
    return MARKER_LIKE.sub(lambda m: "<\u2060< " + m.group(1).lower() + " untrusted", answer)


def markers(label: str, nonce: str) -> tuple[str, str]:
    return f"<<<BEGIN UNTRUSTED {label} {nonce}>>>", f"<<<END UNTRUSTED {label} {nonce}>>>"


def render_rubric_prompt(item: dict[str, Any], answer: str, rubric: Rubric,
                         template: str = "rubric_judge.jinja") -> str:
    nonce = nonce_for(answer)
    begin, end = markers("ANSWER", nonce)
    return _env.get_template(template).render(
        item=item, answer=defuse(answer), rubric=rubric, nonce=nonce, begin_marker=begin, end_marker=end
    )


def render(template: str, **context: Any) -> str:
    return _env.get_template(template).render(**context)
