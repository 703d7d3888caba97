"""JSONL reading with file:line errors, and atomic writes.

Every file dentbench writes goes through `atomic_write_text`: a reader (or a
killed process) sees either the old file or the new one, never half of one. A write
that fails (disk full, file too large, read-only or unwritable folder) removes its
temporary file and becomes one InfrastructureError line naming the path (exit 3).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import DentbenchError, InfrastructureError, located

MAX_LINE_BYTES = 1_000_000  # a prompt-set row is a few KB; a huge line is a broken file


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise DentbenchError(f"{path}: file not found")
    with path.open("rb") as handle:
        seen_any = False
        # readline with a bound: a huge line is refused after reading MAX_LINE_BYTES + 1 of it, never whole
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise located(path, number, f"line is over the {MAX_LINE_BYTES:,}-byte limit")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise located(path, number, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if number == 1:
                text = text.removeprefix("\ufeff")  # tolerate a BOM written by Windows editors
            text = text.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise located(path, number, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise located(path, number, f"expected a JSON object, got {type(obj).__name__}")
            seen_any = True
            yield number, obj
        if not seen_any:
            raise DentbenchError(f"{path}: file is empty")


def cannot_write(path: str | Path, exc: OSError) -> InfrastructureError:
    return InfrastructureError(f"{path}: cannot write ({exc.strerror or exc})")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # ENOSPC, EFBIG, EROFS, EACCES, EDQUOT, EIO ...
            raise cannot_write(path, exc) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-able value, stable across key order."""
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
