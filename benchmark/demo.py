"""`dentbench demo`: the seed's whole workflow on the embedded SmolLM2, no Hub needed.

1. stage 1: LoRA on medical dialogues (tone)            -> <outputs>/adapters/stage1-embedded
2. stage 2: the stage 1 adapter trained on implant Q&A  -> <outputs>/adapters/stage2-embedded
3. stage 1 merged into the 16-bit base, playing "the published medical fine-tune"
4. benchmark: the base (two prompt formats), the merged stage 1, the stage 2 adapter; report.

Each step is skipped when its output is up to date. Training runs in child processes so that
Unsloth's patches never reach the benchmark's generation in this process.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from .errors import DentbenchError

DEMO_CONFIG = "configs/demo.toml"
STAGE_CONFIGS = {"stage1": "configs/train_stage1_embedded.toml", "stage2": "configs/train_stage2_embedded.toml"}
MERGED_NAME = "medical-merged"  # the role ritvik77's published full fine-tune plays in the real benchmark
CANDIDATE_NAME = "candidate"


def train_stage(stage: str, output: Path, outputs: Path, init: Path | None, steps: int | None) -> None:
    command = [sys.executable, "-m", "benchmark.cli", "train", stage, "--config", STAGE_CONFIGS[stage],
               "--output", str(output), "--output-dir", str(outputs)]
    if init is not None:
        command += ["--init-adapter", str(init)]
    if steps is not None:
        command += ["--max-steps", str(steps)]
    print(f"demo: {stage} -> {output}", file=sys.stderr, flush=True)
    code = subprocess.run(command).returncode  # noqa: S603  (our own module, no shell)
    if code != 0:
        error = DentbenchError(f"demo: training {stage} failed (exit {code}); see the message above")
        error.exit_code = code if code in (2, 3) else 3
        raise error


def merge_stage1(stage1: Path, outputs: Path) -> Path:
    from .store import Store
    from .traincli import merge_cached

    base_source = json.loads((stage1 / "training.json").read_text())["base_source"]
    with Store(outputs / "dentbench.sqlite") as store:
        return merge_cached(base_source, stage1, outputs / "models" / "stage1-embedded-merged",
                            outputs.resolve() / "models", store)


def cmd_demo(args: argparse.Namespace) -> int:
    from .runcmd import cmd_run_config, config_from_args
    from .config import with_contestant

    config = config_from_args(args, DEMO_CONFIG)
    outputs = Path(config.output_dir)
    stage1 = (outputs / "adapters" / "stage1-embedded").resolve()
    stage2 = (outputs / "adapters" / "stage2-embedded").resolve()
    if not args.skip_training:
        train_stage("stage1", stage1, outputs, None, args.train_steps)
        train_stage("stage2", stage2, outputs, stage1, args.train_steps)
    for needed in (stage1, stage2):
        if not (needed / "adapter_model.safetensors").is_file():
            raise DentbenchError(f"demo: {needed} is missing; run the demo without --skip-training first")
    merged = merge_stage1(stage1, outputs)
    config = with_contestant(config, MERGED_NAME, str(merged))
    config = with_contestant(config, CANDIDATE_NAME, str(stage2))
    return cmd_run_config(args, config)
