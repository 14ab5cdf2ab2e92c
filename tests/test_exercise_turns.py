"""The lessons' "your turn" exercises: every stub fails its check with a hint, every solution passes.

A your-turn cell is a code cell that calls ``exercises.your_turn(name, yours)``. It must run on its
own after the standard imports below (it is a stub: the learner fills it in), so this test can run
each one without the rest of its lesson. ``make test`` sets ``SAM_LAB_SOLUTIONS=1``, under which the
lessons run with the reference solutions; here the stubs are run with it unset.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from sam_lab import exercises
from sam_lab.exercises import turns as turns_module
from sam_lab.exercises.turns import SOLUTIONS_ENV, all_turns, run_turn_check

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9]*.ipynb"))
PREAMBLE = ("import math\nimport numpy as np\nimport torch\nimport torch.nn as nn\n"
            "import torch.nn.functional as F\nimport sam_lab\nfrom sam_lab import exercises\n")
CALL = re.compile(r"exercises\.your_turn\(\s*[\"'](\w+)[\"']")


def lesson_number(path: Path) -> str:
    return path.name.split("_", 1)[0]


def turn_cells():
    for path in LESSONS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and CALL.search(cell.source):
                yield path, cell


CELLS = list(turn_cells())


def run_stub(source: str, monkeypatch):
    """Run one your-turn cell as a learner would before writing anything; return what it handed in."""
    monkeypatch.delenv(SOLUTIONS_ENV, raising=False)
    handed = {}
    original = turns_module.your_turn

    def recording(name, yours):
        handed[name] = yours
        return original(name, yours)

    monkeypatch.setattr(exercises, "your_turn", recording)
    namespace: dict = {}
    exec(compile(PREAMBLE, "<preamble>", "exec"), namespace)
    namespace["exercises"] = exercises
    exec(compile(source, "<your turn cell>", "exec"), namespace)
    return handed


def test_every_lesson_has_a_your_turn_cell():
    with_turns = {lesson_number(path) for path, _ in CELLS}
    missing = [path.name for path in LESSONS if lesson_number(path) not in with_turns]
    assert not missing, f"lessons without a your-turn exercise: {missing}"


def test_every_exercise_is_asked_in_its_own_lesson_and_checked_there():
    asked = {}
    for path, cell in CELLS:
        for name in CALL.findall(cell.source):
            asked[name] = lesson_number(path)
    turns = all_turns()
    assert set(asked) == set(turns), "exercises defined but never asked, or asked but not defined"
    for name, turn in turns.items():
        assert asked[name] == turn.lesson, f"{name} is asked in lesson {asked[name]}, defined for {turn.lesson}"
        path = next(path for path in LESSONS if lesson_number(path) == turn.lesson)
        source = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
        assert re.search(rf"check_turn\(\s*[\"']{name}[\"']", source), f"lesson {turn.lesson} never checks {name}"


@pytest.mark.parametrize("path,cell", CELLS, ids=[f"{p.stem}:{CALL.search(c.source).group(1)}" for p, c in CELLS])
def test_each_stub_fails_its_check_with_a_hint(path, cell, monkeypatch):
    handed = run_stub(cell.source, monkeypatch)
    assert handed, "the cell did not call exercises.your_turn"
    for name, yours in handed.items():
        result = run_turn_check(name, yours)
        assert not result.passed, f"the stub of {name} already passes its check"
        assert "not written yet" in result.message, result.message
        hint = result.message.split("not written yet - ", 1)[1]
        assert len(hint) > 20, f"the stub of {name} gives no hint: {result.message}"


@pytest.mark.parametrize("name", sorted(all_turns()))
def test_each_solution_passes_its_check(name):
    turn = all_turns()[name]
    result = run_turn_check(name, turn.solution)
    assert result.passed, result.message


def test_your_turn_hands_out_the_solution_only_when_asked(monkeypatch, capsys):
    name, turn = next(iter(all_turns().items()))
    mine = object()
    monkeypatch.delenv(SOLUTIONS_ENV, raising=False)
    assert exercises.your_turn(name, mine) is mine
    monkeypatch.setenv(SOLUTIONS_ENV, "1")
    assert exercises.your_turn(name, mine) is turn.solution
    assert "reference solution" in capsys.readouterr().out
    monkeypatch.setenv(SOLUTIONS_ENV, "0")
    assert exercises.your_turn(name, mine) is mine


def test_check_turn_raises_only_under_the_solutions_switch(monkeypatch, capsys):
    name = next(iter(all_turns()))
    monkeypatch.delenv(SOLUTIONS_ENV, raising=False)
    result = exercises.check_turn(name, object())
    assert not result.passed and "✗" in capsys.readouterr().out
    monkeypatch.setenv(SOLUTIONS_ENV, "1")
    with pytest.raises(AssertionError):
        exercises.check_turn(name, object())


def test_an_unknown_exercise_is_refused_by_name():
    with pytest.raises(ValueError, match="name: expected one of the exercises"):
        exercises.your_turn("no_such_exercise", None)


def test_make_test_runs_the_lessons_with_the_solutions():
    makefile = (ROOT / "Makefile").read_text()
    test_env = re.search(r"^TEST_ENV := (.*)$", makefile, re.M).group(1)
    assert f"{SOLUTIONS_ENV}=1" in test_env.split()
