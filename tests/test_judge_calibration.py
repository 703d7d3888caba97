"""The judges prove themselves: the reference judge meets its sensitivity targets on the shipped
set (on good answers that are not the reference), and agreement metrics are computed honestly."""
from __future__ import annotations

import json

from benchmark.cli import main

from .conftest import REPO


def test_reference_judge_meets_its_targets_on_the_shipped_set(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "reference.json"
    assert main(["judge", "calibrate", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    independent = report["sensitivity"]["independent"]
    assert independent["off_topic"]["pairs"] >= 150
    assert independent["off_topic"]["pass_rate"] >= 0.95
    assert independent["key_facts_removed"]["pass_rate"] >= 0.95
    assert independent["rude_rewrite"]["pass_rate"] >= 0.90
    # the self-check is reported separately: comparing the reference with itself proves little
    assert set(report["sensitivity"]) == {"reference", "independent"}
    agreement = report["agreement"]
    assert report["calibration_rows"] >= 80 and agreement["unscored"]["n"] == 0
    for dim in ("tone", "accuracy", "terminology"):
        assert -1 <= agreement[dim]["spearman"] <= 1 and agreement[dim]["n"] == report["calibration_rows"]
    assert agreement["terminology"]["spearman"] > 0.5  # term matching is what this judge can do
    printed = capsys.readouterr().out
    assert "sensitivity" in printed and "spearman" in printed
