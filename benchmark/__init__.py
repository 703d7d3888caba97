"""dentbench's harness: prompt sets, contestants, generation, cache, runs."""
from .config import ContestantConfig, RunConfig, load_config, with_adapter
from .errors import DentbenchError, InfrastructureError
from .prompts import load_prompt_set
from .records import Answer, GenerationConfig, ModelSpec, PromptItem, PromptSet, RunResult
from .runner import run_benchmark

__all__ = [
    "Answer", "ContestantConfig", "DentbenchError", "GenerationConfig", "InfrastructureError", "ModelSpec",
    "PromptItem", "PromptSet", "RunConfig", "RunResult", "load_config", "load_prompt_set", "run_benchmark",
    "with_adapter",
]
