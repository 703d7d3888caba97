"""The SQLite store: answer cache, file-digest cache and the index of runs.

One file (outputs/dentbench.sqlite). WAL mode and short transactions so that two
runs can share it; every batch of answers is committed as it finishes, which is
what makes a killed run resumable. A write that fails (disk full, file too large,
locked past the busy timeout) rolls back that one transaction and becomes one
InfrastructureError line naming the store; everything committed before is kept.
"""
from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import InfrastructureError
from .fileio import sha256_file
from .records import Answer

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    model_identity TEXT NOT NULL,
    text TEXT NOT NULL,
    new_tokens INTEGER NOT NULL,
    seconds REAL NOT NULL,
    finish_reason TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS file_digests (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS judgments (
    key TEXT PRIMARY KEY,
    answer_key TEXT NOT NULL,
    judge_sha256 TEXT NOT NULL,
    rubric_sha256 TEXT NOT NULL,
    sample INTEGER NOT NULL,
    verdict_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS task_results (
    key TEXT PRIMARY KEY,
    model_identity TEXT NOT NULL,
    task TEXT NOT NULL,
    result_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    run_dir TEXT NOT NULL,
    prompt_set_version TEXT NOT NULL,
    prompt_set_sha256 TEXT NOT NULL,
    n_prompts INTEGER NOT NULL,
    results_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_contestants (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    identity TEXT NOT NULL,
    summary_json TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                self.db.execute("PRAGMA busy_timeout=30000")
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                # Two processes creating the store at once: switching to WAL and the first CREATE
                # TABLEs can return "locked" at once, without waiting on the busy timeout.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise InfrastructureError(f"{self.path}: cannot open the store ({exc})") from None
                self.db.close()
                time.sleep(0.05 + random.random() * 0.2)
            except (OSError, sqlite3.Error) as exc:
                raise InfrastructureError(f"{self.path}: cannot open the store ({exc})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction: it lands whole or not at all; a failure is one clear line (exit 3)."""
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                yield
        except sqlite3.OperationalError as exc:
            raise InfrastructureError(f"{self.path}: cannot write to the store ({exc}); "
                                      "everything committed before is kept") from None

    # answers -------------------------------------------------------------
    def cached_answers(self, keys: Iterable[str]) -> dict[str, sqlite3.Row]:
        keys = list(keys)
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):  # stay under SQLite's variable limit
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                f"SELECT key, text, new_tokens, seconds, finish_reason FROM answers WHERE key IN ({marks})", chunk
            ):
                found[row[0]] = row
        return found

    def put_answers(self, answers: Iterable[Answer]) -> None:
        rows = [(a.key, a.model_identity, a.text, a.new_tokens, a.seconds, a.finish_reason, time.time()) for a in answers]
        with self._writing():  # one transaction: the batch lands whole or not at all
            self.db.executemany("INSERT OR IGNORE INTO answers VALUES (?,?,?,?,?,?,?)", rows)

    def count_answers(self, model_identity: str | None = None) -> int:
        if model_identity is None:
            return self.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM answers WHERE model_identity=?", (model_identity,)).fetchone()[0]

    # judgments -----------------------------------------------------------
    def cached_judgments(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(keys)
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, verdict in self.db.execute(f"SELECT key, verdict_json FROM judgments WHERE key IN ({marks})", chunk):
                found[key] = verdict
        return found

    def put_judgment(self, key: str, answer_key: str, judge_sha256: str, rubric_sha256: str, sample: int,
                     verdict_json: str) -> None:
        with self._writing():
            self.db.execute(
                "INSERT OR IGNORE INTO judgments VALUES (?,?,?,?,?,?,?)",
                (key, answer_key, judge_sha256, rubric_sha256, sample, verdict_json, time.time()),
            )

    def count_judgments(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]

    # lm-eval task results -------------------------------------------------
    def cached_task_results(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(keys)
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        return dict(self.db.execute(f"SELECT key, result_json FROM task_results WHERE key IN ({marks})", keys).fetchall())

    def put_task_result(self, key: str, model_identity: str, task: str, result_json: str) -> None:
        with self._writing():
            self.db.execute("INSERT OR REPLACE INTO task_results VALUES (?,?,?,?,?)",
                            (key, model_identity, task, result_json, time.time()))

    # file digests --------------------------------------------------------
    def file_sha256(self, path: str | Path) -> str:
        """sha256 of a file, remembered by (path, size, mtime) so 14 GB of weights hash once."""
        path = os.path.realpath(path)
        stat = os.stat(path)
        row = self.db.execute("SELECT size, mtime_ns, sha256 FROM file_digests WHERE path=?", (path,)).fetchone()
        if row and row[0] == stat.st_size and row[1] == stat.st_mtime_ns:
            return row[2]
        digest = sha256_file(path)
        with self._writing():
            self.db.execute(
                "INSERT OR REPLACE INTO file_digests VALUES (?,?,?,?)", (path, stat.st_size, stat.st_mtime_ns, digest)
            )
        return digest

    # runs ----------------------------------------------------------------
    def record_run(self, result: dict[str, Any], contestants: list[dict[str, Any]]) -> None:
        with self._writing():
            self.db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?)",
                (
                    result["run_id"],
                    time.time(),
                    result["run_dir"],
                    result["prompt_set_version"],
                    result["prompt_set_sha256"],
                    result["n_prompts"],
                    json.dumps(result),
                ),
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO run_contestants VALUES (?,?,?,?,?,?)",
                [(result["run_id"], c["name"], c["kind"], c["source"], c["identity"], json.dumps(c)) for c in contestants],
            )

    def list_runs(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT results_json FROM runs ORDER BY created_at").fetchall()
        return [json.loads(r[0]) for r in rows]
