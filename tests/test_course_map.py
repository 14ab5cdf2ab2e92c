"""The course map tells the truth: measured run times, and references to lessons that exist."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9]*.ipynb"))
NUMBERS = {p.name.split("_", 1)[0] for p in LESSONS}


def load_script():
    spec = importlib.util.spec_from_file_location("lesson_times", ROOT / "benchmarks" / "lesson_times.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_lesson_has_a_measured_run_time_with_its_machine_and_date():
    results = json.loads((ROOT / "lessons" / "run_times.json").read_text())
    assert set(results["lessons"]) == NUMBERS
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", results["date"])
    assert results["machine"]["cores"] and results["machine"]["cpu"]
    assert all(entry["seconds"] > 0 for entry in results["lessons"].values())


def test_the_course_maps_run_times_are_the_measured_ones():
    script = load_script()
    results = json.loads((ROOT / "lessons" / "run_times.json").read_text())
    readme = (ROOT / "lessons" / "README.md").read_text()
    rows = {}
    header = None
    for line in readme.splitlines():
        if line.startswith("| #"):
            header = [c.strip() for c in line.strip().strip("|").split("|")]
        elif header and line.startswith("|") and not line.startswith("|--"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[header.index("CPU time")]
    assert set(rows) == NUMBERS
    for number, shown in rows.items():
        assert shown == script.shown(results["lessons"][number]["seconds"]), number
    assert results["date"] in readme and "benchmarks/lesson_times.py" in readme


def test_the_times_are_shown_in_seconds_then_half_minutes():
    script = load_script()
    assert script.shown(17.4) == "17 s" and script.shown(99.4) == "99 s"
    assert script.shown(137) == "2.5 min" and script.shown(180) == "3 min"


def test_every_lesson_a_lesson_refers_to_exists():
    pattern = re.compile(r"\blessons? (\d\d[a-z]?)\b(?:(?:,| and| or|–|-) ?(\d\d[a-z]?)\b)*", re.I)
    missing = []
    for path in LESSONS + sorted((ROOT / "widgets").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for match in pattern.finditer(cell.source):
                for number in re.findall(r"\d\d[a-z]?", match.group(0)):
                    if number not in NUMBERS:
                        missing.append(f"{path.name}: {match.group(0)!r}")
    assert not missing, f"references to lessons that do not exist: {missing}"
    for path in LESSONS:
        text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        assert not re.search(r"arrives? in a later lesson|a later lesson (?:trains|brings)", text), path.name
