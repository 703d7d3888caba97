"""The shipped content passes its schemas and decontamination; each schema error kind is caught;
the MedDialog converter handles both published shapes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.datafiles import SHIPPED, validate_file
from benchmark.prompts import parse_seed_prompt

from .conftest import FIXTURES, REPO


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # shipped paths are relative to the repository root


def test_shipped_files_validate(capsys):
    assert main(["data", "validate"]) == 0
    out = capsys.readouterr().out
    for path in SHIPPED.values():
        assert f"{path}: ok" in out


def test_shipped_content_meets_the_issue_counts():
    def rows(path):
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]

    prompts = rows(SHIPPED["prompts"])
    assert len(prompts) >= 150
    categories = {}
    for row in prompts:
        categories[row["category"]] = categories.get(row["category"], 0) + 1
    assert len(categories) >= 10 and min(categories.values()) >= 8
    patient_share = sum(r["voice"] == "patient" for r in prompts) / len(prompts)
    assert 0.55 <= patient_share <= 0.75
    assert len(rows(SHIPPED["stage2"])) >= 400
    assert len(rows(SHIPPED["stage1"])) >= 200
    assert len(rows(SHIPPED["mcq"])) >= 120
    calibration = rows(SHIPPED["calibration"])
    assert len(calibration) >= 80
    assert len({r["quality"] for r in calibration}) == 8


def test_shipped_training_data_is_not_contaminated(tmp_path, capsys):
    report = tmp_path / "decontam.json"
    assert main(["data", "decontam", "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["contaminated_benchmark_ids"] == [] and data["n"] == 13
    assert sum(data["items_checked"].values()) >= 720


def test_decontam_catches_a_planted_leak(tmp_path, capsys):
    bench = [json.loads(line) for line in SHIPPED["prompts"].read_text().splitlines()]
    leak = tmp_path / "stage2_leaky.jsonl"
    rows = [
        # a verbatim slice of a reference (13-gram) ...
        {"prompt": "### Instruction:\nTell me about implants.\n\n### Response:", "response": " ".join(bench[0]["reference"].split()[10:40])},
        # ... and a light paraphrase of another benchmark question (near-duplicate)
        {"prompt": f"### Instruction:\n{bench[5]['question'].rstrip('?.')}, please?\n\n### Response:", "response": "Unrelated filler answer about cheese."},
    ]
    leak.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["data", "decontam", str(leak), "--json", str(tmp_path / "r.json")])
    data = json.loads((tmp_path / "r.json").read_text())
    assert code == 1
    assert set(data["contaminated_benchmark_ids"]) == {bench[0]["id"], bench[5]["id"]}
    methods = {h["benchmark_id"]: h["method"] for h in data["hits"]}
    assert methods[bench[0]["id"]] == "13-gram" and methods[bench[5]["id"]].startswith("cosine")


GOOD_PROMPT = json.loads(SHIPPED["prompts"].read_text().splitlines()[0])
GOOD_MCQ = json.loads(SHIPPED["mcq"].read_text().splitlines()[0])
GOOD_STAGE2 = json.loads(SHIPPED["stage2"].read_text().splitlines()[0])
GOOD_CAL = json.loads(SHIPPED["calibration"].read_text().splitlines()[0])

SCHEMA_ERRORS = {
    # kind, mutation, expected message
    "prompt short reference": ("prompts", lambda r: r.update(reference="Too short."), "reference: 2 words, expected 80 to 250"),
    "prompt bad category": ("prompts", lambda r: r.update(category="astrology"), "category: 'astrology' is not one of"),
    "prompt term absent": ("prompts", lambda r: r.update(required_terms=[{"term": "zygomaticus", "synonyms": []}, *r["required_terms"]]),
                           "required_terms: neither 'zygomaticus' nor a synonym appears"),
    "prompt too many red flags": ("prompts", lambda r: r.update(red_flags=["a", "b", "c", "d"]), "red_flags: has 4 entries, expected 1 to 3"),
    "prompt bad voice": ("prompts", lambda r: r.update(voice="robot"), "voice: 'robot' must be one of"),
    "prompt missing field": ("prompts", lambda r: r.pop("reference"), "missing required field 'reference'"),
    "mcq three choices": ("mcq", lambda r: r.update(choices=r["choices"][:3]), "choices: must be a list of 4 non-empty strings"),
    "mcq answer out of range": ("mcq", lambda r: r.update(answer=4), "answer: must be an integer index 0 to 3"),
    "mcq duplicate choices": ("mcq", lambda r: r.update(choices=["a", "a", "b", "c"]), "choices: must be 4 distinct options"),
    "mcq boolean answer": ("mcq", lambda r: r.update(answer=True), "answer: must be an integer index 0 to 3"),
    "stage2 bad prompt": ("stage2", lambda r: r.update(prompt="Question: hi"), "prompt: must be '### Instruction:"),
    "stage2 empty response": ("stage2", lambda r: r.update(response=" "), "response: must be a non-empty string"),
    "stage2 no sources": ("stage2", lambda r: r.update(sources=[]), "sources: has 0 entries, expected 1 to 3"),
    "calibration unknown prompt": ("calibration", lambda r: r.update(prompt_id="nope-001"), "prompt_id: 'nope-001' is not in"),
    "calibration label range": ("calibration", lambda r: r.update(labels={"tone": 6, "accuracy": 1, "terminology": 1}),
                                "labels: each score must be an integer 1 to 5"),
    "calibration bad quality": ("calibration", lambda r: r.update(quality="meh"), "quality: must be one of"),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_ERRORS))
def test_each_schema_error_names_file_line_and_field(case, tmp_path):
    kind, mutate, expected = SCHEMA_ERRORS[case]
    good = {"prompts": GOOD_PROMPT, "mcq": GOOD_MCQ, "stage2": GOOD_STAGE2, "calibration": GOOD_CAL}[kind]
    bad = json.loads(json.dumps(good))
    mutate(bad)
    path = tmp_path / f"{kind}.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    problems = [str(p) for p in validate_file(path, kind, root=REPO)]
    assert any(p.startswith(f"{path}:2: ") and expected in p for p in problems), problems
    assert not any(p.startswith(f"{path}:1: ") for p in problems)


def test_duplicate_ids_and_broken_json(tmp_path, capsys):
    path = tmp_path / "mcq.jsonl"
    path.write_text(json.dumps(GOOD_MCQ) + "\n" + json.dumps(GOOD_MCQ) + "\n")
    assert any("2: id: duplicate (first on line 1)" in str(p) for p in validate_file(path))
    path.write_text(json.dumps(GOOD_MCQ) + "\n{broken\n")
    assert main(["data", "validate", str(path)]) == 2
    assert f"{path}:2: invalid JSON" in capsys.readouterr().err


def test_meddialog_converter_on_both_shapes(tmp_path, capsys):
    out = tmp_path / "stage1.jsonl"
    code = main(["data", "meddialog", "--input", str(FIXTURES / "meddialog_processed.jsonl"),
                 str(FIXTURES / "meddialog_raw.json"), "--out", str(out)])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3  # the one-line reply and the doctor-only dialogue are skipped
    assert "3 exchanges written, 2 skipped" in capsys.readouterr().out
    first = parse_seed_prompt(rows[0]["prompt"])
    assert first.startswith("Q. What causes a persistent dry cough") and "dry cough that is worse at night" in first
    assert rows[0]["response"].startswith("A cough that lingers")  # the "Hi, thanks for the query." greeting is dropped
    assert parse_seed_prompt(rows[2]["prompt"]).startswith("My ankle is swollen")
    assert validate_file(out, "stage1") == []


def test_meddialog_without_files_or_hub_is_a_clear_error(tmp_path, capsys):
    code = main(["data", "meddialog", "--out", str(tmp_path / "x.jsonl")])
    err = capsys.readouterr().err
    assert code == 3 and "cannot load UCSD26/medical_dialog" in err and "--input" in err
    assert not (tmp_path / "x.jsonl").exists()
