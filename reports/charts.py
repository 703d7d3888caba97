"""Chart geometry for inline SVG: plain numbers and labels, drawn by Jinja macros (autoescaped).

Hand-drawn SVG is smaller than matplotlib's output, needs no font files, and keeps every label
(contestant names, categories) behind Jinja's autoescape.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    label: str
    whisker_low: float | None = None  # y of the CI's lower end (SVG y grows downwards)
    whisker_high: float | None = None
    value: str = ""


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    groups: list[tuple[float, str]]  # (x centre, label)
    ticks: list[tuple[float, str]]  # (y, label)
    legend: list[tuple[str, str]]  # (color, label)
    title: str


def score_bars(scores: dict[str, dict[str, Any]], dimensions: Sequence[str], title: str) -> BarChart:
    """One group per dimension, one bar per contestant, whiskers at the 95% CI; scale 1-5."""
    names = list(scores)
    width, height, left, top, bottom = 640, 260, 40, 20, 40
    plot_h = height - top - bottom
    group_w = (width - left - 10) / max(len(dimensions), 1)
    bar_w = min(28.0, (group_w - 16) / max(len(names), 1))

    def y(value: float) -> float:
        return top + plot_h * (1 - (value - 1) / 4)

    bars, groups = [], []
    for g, dim in enumerate(dimensions):
        start = left + g * group_w + (group_w - bar_w * len(names)) / 2
        groups.append((left + g * group_w + group_w / 2, dim))
        for i, name in enumerate(names):
            est = scores[name].get(dim) or {}
            mean = est.get("mean")
            if mean is None:
                continue
            bars.append(Bar(
                x=round(start + i * bar_w, 1), y=round(y(mean), 1), width=round(bar_w - 3, 1),
                height=round(y(1) - y(mean), 1), color=PALETTE[i % len(PALETTE)], label=f"{name}: {dim}",
                whisker_low=round(y(est["low"]), 1) if est.get("low") is not None else None,
                whisker_high=round(y(est["high"]), 1) if est.get("high") is not None else None,
                value=f"{mean:.2f} [{est.get('low', mean):.2f}, {est.get('high', mean):.2f}]",
            ))
    ticks = [(round(y(v), 1), str(v)) for v in (1, 2, 3, 4, 5)]
    legend = [(PALETTE[i % len(PALETTE)], name) for i, name in enumerate(names)]
    return BarChart(width, height, bars, groups, ticks, legend, title)


@dataclass(frozen=True)
class Heatmap:
    width: int
    height: int
    cells: list[dict[str, Any]]
    rows: list[tuple[float, str]]
    cols: list[tuple[float, str]]
    title: str


def heat_color(value: float | None) -> str:
    """1 (red) to 5 (green) through amber; grey when there is no score."""
    if value is None:
        return "#e5e7eb"
    t = max(0.0, min(1.0, (value - 1) / 4))
    red = (220, 38, 38)
    amber = (245, 158, 11)
    green = (22, 163, 74)
    a, b, u = (red, amber, t * 2) if t < 0.5 else (amber, green, (t - 0.5) * 2)
    return "#" + "".join(f"{round(a[k] + (b[k] - a[k]) * u):02x}" for k in range(3))


def category_heatmap(table: dict[str, dict[str, float | None]], title: str) -> Heatmap:
    """table[category][contestant] = mean overall score."""
    categories = sorted(table)
    names = sorted({n for row in table.values() for n in row})
    cell_w, cell_h, left, top = 120, 22, 190, 30
    cells = []
    for r, category in enumerate(categories):
        for c, name in enumerate(names):
            value = table[category].get(name)
            cells.append({"x": left + c * cell_w, "y": top + r * cell_h, "w": cell_w - 2, "h": cell_h - 2,
                          "fill": heat_color(value), "text": "-" if value is None else f"{value:.2f}",
                          "label": f"{name} / {category}"})
    rows = [(top + r * cell_h + cell_h / 2 + 4, cat) for r, cat in enumerate(categories)]
    cols = [(left + c * cell_w + cell_w / 2, name) for c, name in enumerate(names)]
    return Heatmap(left + len(names) * cell_w + 10, top + len(categories) * cell_h + 10, cells, rows, cols, title)


@dataclass(frozen=True)
class Scatter:
    width: int
    height: int
    points: list[dict[str, Any]]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    legend: list[tuple[str, str]] = field(default_factory=list)
    title: str = ""
    x_label: str = ""


def scatter(points: Sequence[tuple[str, float, float]], title: str, x_label: str,
            y_min: float, y_max: float, y_format: str = "{:g}") -> Scatter:
    """points: (series, x, y); x from 0 to its maximum, y from y_min to y_max."""
    names = sorted({p[0] for p in points})
    width, height, left, top, bottom = 640, 260, 40, 20, 40
    max_x = max([p[1] for p in points] + [10])
    plot_w, plot_h = width - left - 20, height - top - bottom
    span = (y_max - y_min) or 1.0

    def x(value: float) -> float:
        return round(left + plot_w * value / max_x, 1)

    def y(value: float) -> float:
        return round(top + plot_h * (1 - (value - y_min) / span), 1)

    dots = [{"cx": x(px), "cy": y(py), "color": PALETTE[names.index(n) % len(PALETTE)],
             "label": f"{n}: {px:g}, {y_format.format(py)}"} for n, px, py in points]
    step = max(1, round(max_x / 5, -1) or round(max_x / 5))
    x_ticks = [(x(v), str(int(v))) for v in range(0, int(max_x) + 1, int(step))]
    y_ticks = [(y(y_min + span * k / 4), y_format.format(y_min + span * k / 4)) for k in range(5)]
    legend = [(PALETTE[i % len(PALETTE)], n) for i, n in enumerate(names)]
    return Scatter(width, height, dots, x_ticks, y_ticks, legend, title, x_label)


def length_scatter(points: Sequence[tuple[str, int, float]], title: str) -> Scatter:
    """points: (contestant, answer words, overall score on 1-5)."""
    return scatter(points, title, "answer length (words)", 1, 5)


def loss_scatter(curve: Sequence[dict[str, float]], title: str) -> Scatter:
    """A training loss curve: [{"step", "loss"}], y from 0 to the highest loss."""
    top = max(p["loss"] for p in curve) or 1.0
    return scatter([("loss", p["step"], p["loss"]) for p in curve], title, "step", 0.0, top, "{:.3f}")
