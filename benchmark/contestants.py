"""Contestants resolved for a run: spec, identity, generation settings, and the base they share.

Everything here runs before the first model loads: names, paths, identities (file hashes) and
whether each adapter fits its base (on meta-device shapes), so bad input costs seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import RunConfig
from .errors import DentbenchError
from .loading import base_module_shapes, check_adapter_fits
from .records import GenerationConfig, ModelSpec
from .specs import model_identity, parse_source, resolve_weights
from .store import Store


@dataclass(frozen=True)
class Contestant:
    spec: ModelSpec
    identity: str
    gen: GenerationConfig
    base_identity: str | None  # contestants with the same one share a loaded model


def resolve_contestants(config: RunConfig, store: Store, models_dir: Path) -> list[Contestant]:
    if not config.contestants:
        raise DentbenchError(f"{config.source_file}: no contestants (add [[contestants]] or pass --adapter PATH)")
    resolved = []
    for index, entry in enumerate(config.contestants, start=1):
        spec = parse_source(
            entry.name,
            entry.source,
            base=entry.base,
            api_key_env=entry.api_key_env,
            chat_format=entry.chat_format,  # type: ignore[arg-type]
            setting=f"contestant '{entry.name}'",
        )
        identity = model_identity(spec, store, models_dir, config.allow_pickle)
        base_identity = None
        if spec.kind == "adapter":
            assert spec.base is not None
            base_identity = model_identity(spec.base, store, models_dir, config.allow_pickle)
        elif spec.loads_weights:
            base_identity = identity
        resolved.append(Contestant(spec, identity, config.generation(spec.chat_format), base_identity))
    check_adapters(resolved, models_dir, config)
    return resolved


def check_adapters(contestants: list[Contestant], models_dir: Path, config: RunConfig) -> None:
    """Every adapter must fit its base; checked on meta-device shapes before any weights load."""
    shapes: dict[str, dict[str, tuple[int, int]]] = {}
    for c in contestants:
        if c.spec.kind != "adapter":
            continue
        assert c.spec.base is not None and c.base_identity is not None
        folder = resolve_weights(c.spec.base, models_dir, config.allow_pickle)
        if c.base_identity not in shapes:
            shapes[c.base_identity] = base_module_shapes(folder, config.trust_remote_code)
        check_adapter_fits(shapes[c.base_identity], c.spec.base.source, Path(c.spec.location))


def weights_spec(contestant: Contestant) -> ModelSpec:
    return contestant.spec.base if contestant.spec.kind == "adapter" else contestant.spec  # type: ignore[return-value]
