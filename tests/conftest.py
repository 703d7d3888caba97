"""Shared fixtures: the real embedded model, materialised once per session, and real
PEFT LoRA adapters with non-zero weights built on it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # tests must never reach for the Hub
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMALL_PROMPTS = FIXTURES / "prompts_small.jsonl"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def embedded_folder(models_dir) -> Path:
    from benchmark.embedded import materialise

    return materialise("smollm2-135m-instruct", models_dir)


def make_adapter(base_folder: Path, out: Path, seed: int, r: int = 8, base_source: str | None = None) -> Path:
    from training.synthetic import make_random_adapter

    return make_random_adapter(base_folder, out, seed=seed, r=r, base_source=base_source)


@pytest.fixture(scope="session")
def adapters(embedded_folder, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return (
        make_adapter(embedded_folder, root / "adapter_a", seed=1),
        make_adapter(embedded_folder, root / "adapter_b", seed=2),
    )


@pytest.fixture
def outputs(tmp_path, models_dir) -> Path:
    """A fresh output dir that reuses the session's converted model (no 20 s reconversion per test)."""
    out = tmp_path / "outputs"
    (out / "models").mkdir(parents=True)
    target = out / "models" / "smollm2-135m-instruct"
    source = models_dir / "smollm2-135m-instruct"
    if source.exists():
        shutil.copytree(source, target)
    return out


def write_config(path: Path, run: dict, contestants: list[dict]) -> Path:
    def value(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    lines = ["[run]"] + [f"{k} = {value(v)}" for k, v in run.items()]
    for c in contestants:
        lines += ["", "[[contestants]]"] + [f"{k} = {value(v)}" for k, v in c.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, port: int, log: Path, cache: Path):
    """Start `transformers serve` on 127.0.0.1:port and wait for /health (at most 120 s)."""
    import subprocess
    import sys
    import time
    import urllib.request

    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    cli = Path(sys.executable).parent / "transformers"
    with log.open("a") as handle:
        proc = subprocess.Popen(
            [str(cli), "serve", str(folder), "--host", "127.0.0.1", "--port", str(port)],
            stdout=handle, stderr=subprocess.STDOUT, env=env,
        )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited: {log.read_text()[-2000:]}")
    proc.kill()
    raise RuntimeError("transformers serve did not become healthy in 120 s")


def stop_server(proc) -> None:
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def served_model(embedded_folder, tmp_path_factory):
    """A real `transformers serve` of the embedded model on a loopback port: (base_url, model, log)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = start_server(embedded_folder, port, log, tmp_path_factory.mktemp("hf_cache"))
    yield f"http://127.0.0.1:{port}/v1", str(embedded_folder), log
    stop_server(proc)


def count_rows(store: Path, table: str) -> int:
    """Rows so far, polled while another process writes; a store still being created counts 0."""
    import sqlite3

    try:
        with sqlite3.connect(store, timeout=30) as db:
            return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    except sqlite3.OperationalError:  # the file exists before its tables do
        return 0
