"""`dentbench demo`: the seed's whole workflow on the embedded model, end to end (shortened)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import REPO

SHORT = ["--train-steps", "2", "--limit", "4", "--max-new-tokens", "16"]


def demo(outputs, *extra):
    return subprocess.run([sys.executable, "-m", "benchmark.cli", "demo", "--output-dir", str(outputs), *SHORT, *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=1200, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_demo_trains_merges_benchmarks_and_skips_what_is_done(outputs):
    first = demo(outputs)
    assert first.returncode == 0, first.stderr[-4000:]
    stage1, stage2 = outputs / "adapters" / "stage1-embedded", outputs / "adapters" / "stage2-embedded"
    record2 = json.loads((stage2 / "training.json").read_text())
    assert record2["stage"] == "stage2" and record2["init_adapter"] == str(stage1.resolve())
    assert json.loads((stage1 / "training.json").read_text())["global_step"] == 2
    run_dir = next((outputs / "runs").iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    kinds = {c["name"]: c["kind"] for c in manifest["contestants"]}
    assert kinds == {"smollm2-chat": "embedded", "smollm2-instruction": "embedded",
                     "medical-merged": "local", "candidate": "adapter"}
    formats = {c["name"]: c.get("chat_format") for c in manifest["contestants"]}
    assert formats["medical-merged"] == "instruction" and formats["candidate"] == "instruction"
    results = json.loads((run_dir / "results.json").read_text())
    assert {c["name"] for c in results["contestants"]} == set(kinds)
    report = (run_dir / "report.html").read_text()
    assert "training loss by step" in report  # the candidate's training.json is drawn
    stamp = (stage2 / "adapter_model.safetensors").stat().st_mtime_ns

    again = demo(outputs)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stdout.count("up to date") == 2 and "stage1-embedded-merged is up to date" in again.stderr
    assert (stage2 / "adapter_model.safetensors").stat().st_mtime_ns == stamp
