"""Run report and leaderboard in a real headless Chromium: hostile answers stay inert, nothing
leaves the page, the tables are there with JavaScript on and off."""
from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest

from benchmark.config import load_config
from benchmark.runner import run_benchmark

from .conftest import SMALL_PROMPTS, free_port, write_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Beacon(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        Beacon.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def beacon():
    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), Beacon)
    Beacon.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port
    server.shutdown()


def hostile_answers(port: int) -> dict[str, str]:
    url = f"http://127.0.0.1:{port}"
    return {
        "t-psel-1": f"<script>document.title='PWNED';fetch('{url}/script')</script> Implants are fine.",
        "t-psel-2": f'<img src="{url}/img" onerror="document.title=\'PWNED\'"> "quotes" & \'apostrophes\'',
        "t-comp-1": f'<a href="javascript:document.title=\'PWNED\'">click me</a> <iframe src="{url}/frame"></iframe>',
        "t-comp-2": "<!-- unterminated comment <style>body{display:none}</style> \u202eRTL override\u202c 😀 ünïcödé",
        "t-main-1": "long " * 12000 + f'<link rel="stylesheet" href="{url}/css">',
        "t-main-2": f'</pre></div></section><svg onload="document.title=\'PWNED\'"><image href="{url}/svg"/></svg>',
    }


class Elements(HTMLParser):
    """Every real element of a serialised DOM, with its attributes (escaped text is not an element)."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def chromium(*args: str) -> str:
    assert CHROMIUM, "chromium is installed by `make test` (Debian package)"
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--virtual-time-budget=3000", *args], capture_output=True, text=True, timeout=120)
    return result.stdout


@pytest.fixture
def hostile_run(tmp_path, outputs, beacon):
    answers = tmp_path / "hostile.jsonl"
    answers.write_text("".join(json.dumps({"id": k, "answer": v}) + "\n" for k, v in hostile_answers(beacon).items()))
    config = write_config(tmp_path / "run.toml", {"prompts": str(SMALL_PROMPTS), "output_dir": str(outputs)}, [
        {"name": "hostile", "source": f"answers:{answers}"},
        {"name": "plain", "source": f"answers:{answers}"},
    ])
    result = run_benchmark(load_config(config))
    return Path(result.run_dir)


def test_hostile_answers_render_inert_in_chromium(hostile_run, tmp_path, beacon):
    report = hostile_run / "report.html"
    html = report.read_text()
    assert "&lt;script&gt;document.title=" in html and "<script>document.title" not in html
    dom = chromium("--dump-dom", report.as_uri())
    assert "<title>dentbench run" in dom and "PWNED" not in dom.split("</title>")[0]
    assert 'id="leaderboard-table"' in dom and dom.count('class="prompt"') == 6
    assert '<form id="filters" class="filters">' in dom  # our own script ran (the CSP allows it by hash)
    elements = Elements(dom).tags
    names = [tag for tag, _ in elements]
    assert "iframe" not in names and "img" not in names and "link" not in names and "image" not in names
    assert names.count("script") == 1  # ours, nothing from an answer
    assert not [a for _, a in elements if any(k.startswith("on") for k in a)]  # no event handlers at all
    assert not [a for t, a in elements if t == "a" and (a.get("href") or "").startswith("javascript:")]
    assert "&lt;script&gt;document.title='PWNED'" in dom  # the text is shown, as text
    assert Beacon.hits == []  # no request left the page: not the image, frame, stylesheet or fetch
    shot = tmp_path / "report.png"
    chromium("--window-size=1280,2000", f"--screenshot={shot}", report.as_uri())
    assert shot.is_file() and shot.stat().st_size > 20_000


def test_report_reads_with_javascript_off(hostile_run, tmp_path):
    # headless Chromium ignores its JavaScript-off switches; a CSP of script-src 'none' makes the
    # browser itself refuse every script on the page, which is the same condition
    html = (hostile_run / "report.html").read_text()
    no_js = tmp_path / "report_no_js.html"
    no_js.write_text(re.sub(r"script-src '[^']+'", "script-src 'none'", html, count=1))
    dom = chromium("--dump-dom", no_js.as_uri())
    assert 'id="leaderboard-table"' in dom and "<td>hostile</td>" in dom and "<td>plain</td>" in dom
    assert dom.count('class="answer"') == 12  # side by side: 6 prompts x 2 contestants
    assert '<form id="filters" class="filters" hidden="">' in dom  # filters stay hidden without JS


def test_leaderboard_groups_runs_and_links_reports(tmp_path, outputs, hostile_run):
    other = tmp_path / "prompts_v2.jsonl"
    other.write_text(SMALL_PROMPTS.read_text())
    answers = tmp_path / "plain.jsonl"
    answers.write_text(json.dumps({"id": "t-psel-1", "answer": "Usually yes, if well controlled."}) + "\n")
    config = write_config(tmp_path / "v2.toml", {"prompts": str(other), "output_dir": str(outputs)},
                          [{"name": "plain", "source": f"answers:{answers}"}])
    run_benchmark(load_config(config))
    board = outputs / "leaderboard.html"
    dom = chromium("--dump-dom", board.as_uri())
    assert dom.count("<h2>") == 2  # two prompt-set versions are never mixed in one table
    assert "prompts_small" in dom and "prompts_v2" in dom
    assert f'href="runs/{hostile_run.name}/report.html"' in dom
    assert (outputs / f"runs/{hostile_run.name}/report.html").is_file()


def test_training_loss_curve_is_drawn_on_its_own_axes():
    from reports.charts import loss_scatter

    chart = loss_scatter([{"step": 0, "loss": 2.0}, {"step": 50, "loss": 1.0}, {"step": 100, "loss": 0.5}], "loss")
    assert chart.x_label == "step" and chart.y_ticks[0][1] == "0.000" and chart.y_ticks[-1][1] == "2.000"
    first, last = chart.points[0], chart.points[-1]
    assert first["cy"] < last["cy"]  # a falling loss is drawn falling (SVG y grows downwards)
    assert last["cx"] > first["cx"]
