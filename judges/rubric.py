"""The rubric: dimensions with a description per level, loaded from TOML and hashed."""
from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RUBRIC = Path(__file__).resolve().parent / "rubrics" / "dental_v1.toml"


class RubricError(ValueError):
    pass


@dataclass(frozen=True)
class Dimension:
    name: str
    question: str
    levels: tuple[str, ...]  # levels[0] describes a 1, levels[4] a 5


@dataclass(frozen=True)
class Rubric:
    name: str
    sha256: str  # of the file bytes: recorded with every judgment
    audience: str
    dimensions: tuple[Dimension, ...]
    key_points_instruction: str
    red_flags_instruction: str

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)


def load_rubric(path: str | Path = DEFAULT_RUBRIC) -> Rubric:
    path = Path(path)
    if not path.is_file():
        raise RubricError(f"{path}: rubric file not found")
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RubricError(f"{path}: invalid rubric TOML ({exc})") from None
    dimensions = []
    for name, spec in data.get("dimensions", {}).items():
        levels = tuple(str(spec.get(str(level), "")).strip() for level in range(1, 6))
        if not all(levels) or not spec.get("question"):
            raise RubricError(f"{path}: dimension '{name}' needs 'question' and a description for each level 1-5")
        dimensions.append(Dimension(name, spec["question"], levels))
    if not dimensions:
        raise RubricError(f"{path}: no [dimensions.*] tables")
    return Rubric(
        name=str(data.get("name", path.stem)),
        sha256=hashlib.sha256(raw).hexdigest(),
        audience=str(data.get("audience", "")),
        dimensions=tuple(dimensions),
        key_points_instruction=str(data.get("key_points", {}).get("instruction", "")),
        red_flags_instruction=str(data.get("red_flags", {}).get("instruction", "")),
    )
