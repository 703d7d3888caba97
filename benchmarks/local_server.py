"""The embedded SmolLM2 behind a real `transformers serve` on a loopback port, for the
throughput benchmarks (judge and endpoint contestants share it)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmark.embedded import materialise  # noqa: E402


@contextlib.contextmanager
def served_embedded(work: Path, continuous_batching: bool = True) -> Iterator[tuple[Path, str]]:
    """Yield (model folder, base URL ending in /v1) while the server runs; stop it after."""
    folder = materialise("smollm2-135m-instruct", work / "models")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [str(Path(sys.executable).parent / "transformers"), "serve", str(folder), "--host", "127.0.0.1", "--port", str(port)]
    if continuous_batching:
        cmd.append("--continuous-batching")
    env = {**os.environ, "HF_HUB_CACHE": str(work / "hf")}
    with (work / "serve.log").open("w") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            for _ in range(240):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
            else:
                raise RuntimeError(f"transformers serve did not come up; see {work / 'serve.log'}")
            yield folder, f"http://127.0.0.1:{port}/v1"
        finally:
            server.terminate()
            server.wait(timeout=30)
