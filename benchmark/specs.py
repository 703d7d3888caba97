"""Contestant specs: parse what the user wrote, resolve it, and give it an identity.

A model's identity is the hash of its weight and adapter files (and its base's),
never its path: the same adapter copied elsewhere hits the cache, and a retrained
adapter at the same path does not.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .embedded import materialise
from .errors import DentbenchError, InfrastructureError
from .fileio import sha256_json
from .records import ChatFormat, ModelSpec
from .store import Store

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # names become file names and HTML ids
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
IDENTITY_FILES = re.compile(
    r"(\.safetensors|\.bin|config\.json|tokenizer.*|special_tokens_map\.json|chat_template\.jinja|\.model)$"
)
HUB_PATTERNS = ["*.safetensors", "*.json", "tokenizer*", "*.jinja", "*.model"]


def check_name(name: str, setting: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise DentbenchError(f"{setting}: contestant name {name!r:.40} must be 1-64 letters, digits, '_', '-' or '.'")
    return name


def parse_source(
    name: str,
    source: str,
    *,
    base: str | None = None,
    api_key_env: str | None = None,
    chat_format: ChatFormat | None = None,
    setting: str = "contestant",
) -> ModelSpec:
    """Turn a source string into a ModelSpec without loading anything heavy."""
    check_name(name, setting)
    if not isinstance(source, str) or not source.strip():
        raise DentbenchError(f"{setting}: 'source' must be a non-empty string")
    common: dict[str, Any] = {"name": name, "source": source, "chat_format": chat_format}
    if source.startswith("embedded:"):
        return ModelSpec(kind="embedded", location=source.removeprefix("embedded:"), **common)
    if source.startswith("openai:"):
        model, sep, url = source.removeprefix("openai:").partition("@")
        if not model or not sep or not url.startswith(("http://", "https://")):
            raise DentbenchError(f"{setting}: {source!r} is not openai:MODEL@http(s)://HOST/v1")
        return ModelSpec(kind="openai", location=url, endpoint_model=model, api_key_env=api_key_env or "OPENAI_API_KEY", **common)
    if source.startswith("answers:"):
        path = Path(source.removeprefix("answers:")).expanduser()
        if not path.is_file():
            raise DentbenchError(f"{setting}: answers file {path} not found")
        return ModelSpec(kind="answers", location=str(path.resolve()), **common)
    path = Path(source).expanduser()
    if path.is_dir():
        folder = path.resolve()
        if chat_format is None:  # a model we trained is prompted the way it was trained
            common["chat_format"] = trained_format(folder)
        if (folder / "adapter_config.json").is_file():
            return ModelSpec(kind="adapter", location=str(folder), base=_adapter_base(name, folder, base, setting), **common)
        if (folder / "config.json").is_file():
            return ModelSpec(kind="local", location=str(folder), **common)
        raise DentbenchError(f"{setting}: {folder} has neither adapter_config.json nor config.json")
    looks_local = source.startswith((".", "/", "~")) or source.count("/") != 1 or Path(source.split("/")[0]).is_dir()
    if looks_local or not HUB_ID.match(source):
        raise DentbenchError(f"{setting}: model folder {source} not found")
    return ModelSpec(kind="hub", location=source, **common)


def trained_format(folder: Path) -> ChatFormat | None:
    """The prompt format recorded by `dentbench train` (training.json) or `export` (merge.json)."""
    for name, keys in (("training.json", ("hyperparameters", "format")), ("merge.json", ("format",))):
        try:
            value: Any = json.loads((folder / name).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value in ("chat_template", "instruction"):
            return value
    return None


def _adapter_base(name: str, folder: Path, override: str | None, setting: str) -> ModelSpec:
    """The adapter's base: the config's override, else what training recorded, else PEFT's field."""
    chosen = override
    if chosen is None and (folder / "training.json").is_file():
        chosen = json.loads((folder / "training.json").read_text()).get("base_source")
    if chosen is None:
        try:
            chosen = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
        except json.JSONDecodeError as exc:
            raise DentbenchError(f"{folder / 'adapter_config.json'}: invalid JSON ({exc.msg})") from None
    if not chosen:
        raise DentbenchError(f"{setting}: {folder} does not name its base model; set 'base' for it in the config")
    spec = parse_source(f"{name}.base", chosen, setting=f"{setting} (base of {folder.name})")
    if spec.kind not in ("hub", "local", "embedded"):
        raise DentbenchError(f"{setting}: base {chosen!r} of adapter {folder} must be a full model")
    return spec


def resolve_weights(spec: ModelSpec, models_dir: str | Path, allow_pickle: bool = False) -> Path:
    """The local folder holding a full model's weights (materialising or fetching as needed)."""
    if spec.kind == "embedded":
        folder = materialise(spec.location, models_dir)
    elif spec.kind == "local":
        folder = Path(spec.location)
    elif spec.kind == "hub":
        folder = _hub_snapshot(spec.location, allow_pickle)
    else:
        raise ValueError(f"{spec.kind} has no weights folder")
    weights = [p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES]
    if not weights:
        pickles = [p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if not pickles:
            raise DentbenchError(f"contestant '{spec.name}': model folder {folder} has no weights (*.safetensors)")
        if not allow_pickle:
            raise DentbenchError(
                f"contestant '{spec.name}': {folder} has only pickle weights ({pickles[0].name}); "
                "pickles can run code on load, pass --allow-pickle if you trust them"
            )
    return folder


def _hub_snapshot(repo_id: str, allow_pickle: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = HUB_PATTERNS + (["*.bin"] if allow_pickle else [])
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        raise InfrastructureError(
            f"model {repo_id} is not in the local Hugging Face cache and the Hub is unreachable (offline?)"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise InfrastructureError(f"model {repo_id}: cannot fetch from the Hub ({type(exc).__name__}: {exc})".splitlines()[0]) from None


def folder_identity(folder: Path, store: Store) -> str:
    files = sorted(p for p in folder.iterdir() if p.is_file() and IDENTITY_FILES.search(p.name))
    return sha256_json([[p.name, store.file_sha256(p)] for p in files])


def model_identity(spec: ModelSpec, store: Store, models_dir: str | Path, allow_pickle: bool = False) -> str:
    if spec.kind in ("hub", "local", "embedded"):
        return folder_identity(resolve_weights(spec, models_dir, allow_pickle), store)
    if spec.kind == "adapter":
        assert spec.base is not None
        folder = Path(spec.location)
        adapter_files = sorted(p for p in folder.iterdir() if p.name.startswith("adapter_") and p.is_file())
        if not any(p.suffix == ".safetensors" for p in adapter_files):
            raise DentbenchError(f"contestant '{spec.name}': adapter folder {folder} has no adapter_model.safetensors")
        base_id = model_identity(spec.base, store, models_dir, allow_pickle)
        return sha256_json({"base": base_id, "adapter": [[p.name, store.file_sha256(p)] for p in adapter_files]})
    if spec.kind == "openai":
        # an endpoint's weights are invisible to us: its identity is what we asked for
        return sha256_json({"openai": spec.location.rstrip("/"), "model": spec.endpoint_model})
    if spec.kind == "answers":
        return sha256_json({"answers": store.file_sha256(spec.location)})
    raise ValueError(spec.kind)


def api_key(spec: ModelSpec) -> str:
    """Read the key at call time; it never lands in a record, file or log."""
    assert spec.api_key_env
    return os.environ.get(spec.api_key_env) or "EMPTY"  # local servers accept any key
