"""Your-turn exercises: a stub you write in the lesson, a reference solution here, one switch.

Each lesson has at least one "your turn" cell. It holds a stub that raises
``NotImplementedError`` with a hint, and ends with one line::

    my_focal_loss = exercises.your_turn("focal_loss", my_focal_loss)

A later cell checks it::

    exercises.check_turn("focal_loss", my_focal_loss)

``your_turn`` returns what you wrote, unchanged, unless the environment variable
``SAM_LAB_SOLUTIONS`` is ``1``: then it returns the reference solution from
:mod:`sam_lab.exercises.solutions` (``make test`` sets it, so CI runs every lesson with the
solutions filled in). ``check_turn`` prints ✓ or ✗ with the checker's explanation; it raises only
when solutions are on, so a learner's "Run all" carries on past an exercise they have not done yet
(cells that use the unfinished stub then raise its hint).

Exercises are :class:`Turn` s, one list per lesson in ``sam_lab/exercises/solutions/lesson_XX.py``
(found by name, no registry to edit). A turn is checked either by a stage of
:func:`sam_lab.exercises.check` (``stage=``) or by its own ``check`` callable, for which
:func:`compare_function` does the usual work for plain functions.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .engine import CheckResult

SOLUTIONS_ENV = "SAM_LAB_SOLUTIONS"


@dataclass(frozen=True)
class Turn:
    """One exercise: what the learner writes, in which lesson, and how it is checked."""

    name: str
    lesson: str  # "01", "03b", ...
    title: str  # one line: what you write
    solution: Any  # the reference: a class, a function or a tuple of functions
    stage: Optional[str] = None  # a stage of sam_lab.exercises.check, or
    check: Optional[Callable[[Any], CheckResult]] = None  # a checker of its own
    check_kwargs: Tuple[Tuple[str, Any], ...] = ()  # extra keyword arguments for check(stage, ...)

    def __post_init__(self) -> None:
        if (self.stage is None) == (self.check is None):
            raise ValueError(f"Turn {self.name!r}: give exactly one of stage= or check=")


def solutions_enabled() -> bool:
    """True when ``$SAM_LAB_SOLUTIONS`` asks for the reference solutions (1, true, yes, on)."""
    return os.environ.get(SOLUTIONS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def all_turns() -> Dict[str, Turn]:
    """Every exercise, by name, gathered from ``sam_lab.exercises.solutions.lesson_*``."""
    from . import solutions

    turns: Dict[str, Turn] = {}
    for info in sorted(pkgutil.iter_modules(solutions.__path__), key=lambda i: i.name):
        if not info.name.startswith("lesson_"):
            continue
        module = importlib.import_module(f"{solutions.__name__}.{info.name}")
        for turn in getattr(module, "TURNS", ()):
            if turn.name in turns:
                raise RuntimeError(f"exercise {turn.name!r} is defined twice")
            turns[turn.name] = turn
    return turns


def get_turn(name: str) -> Turn:
    turns = all_turns()
    if not isinstance(name, str) or name not in turns:
        raise ValueError(f"name: expected one of the exercises {sorted(turns)}, got {name!r}")
    return turns[name]


def your_turn(name: str, yours: Any) -> Any:
    """Return ``yours``; with ``$SAM_LAB_SOLUTIONS=1``, the reference solution instead."""
    turn = get_turn(name)
    if solutions_enabled():
        print(f"{SOLUTIONS_ENV}=1: exercise {name!r} uses the reference solution "
              f"(sam_lab.exercises.solutions.lesson_{turn.lesson}); unset it to check your own")
        return turn.solution
    return yours


def run_turn_check(name: str, yours: Any, *, verbose: bool = False) -> CheckResult:
    """The checker of exercise ``name`` on ``yours``, never raising for a wrong answer."""
    from . import check  # the package's check; imported here, the package imports this module

    turn = get_turn(name)
    if turn.stage is not None:
        result = check(turn.stage, yours, verbose=False, **dict(turn.check_kwargs))
    else:
        result = turn.check(yours)
    if not result.passed and "NotImplementedError" in result.message:
        hint = result.message.split("NotImplementedError:", 1)[-1].strip().rstrip(")")
        result = CheckResult(result.stage, False,
                             f"✗ {name}: not written yet - {hint}", result.max_abs_diff)
    if verbose:
        print(result.message)
    return result


def check_turn(name: str, yours: Any) -> CheckResult:
    """Check your answer to exercise ``name`` and print what was found.

    A wrong answer raises ``AssertionError`` only when ``$SAM_LAB_SOLUTIONS=1`` (CI), so that the
    rest of a lesson still runs for a learner who has not written it yet."""
    result = run_turn_check(name, yours, verbose=True)
    if not result.passed and solutions_enabled():
        raise AssertionError(result.message)
    return result


# ----------------------------------------------------------------------------- plain functions

def _as_tuple(value: Any) -> Tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _same(a: Any, b: Any, atol: float, rtol: float) -> bool:
    a, b = _as_tuple(a), _as_tuple(b)
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        x, y = torch.as_tensor(x).float(), torch.as_tensor(y).float()
        if x.shape != y.shape or not torch.allclose(x, y, atol=atol, rtol=rtol, equal_nan=False):
            return False
    return True


def _describe(value: Any) -> str:
    parts = []
    for x in _as_tuple(value):
        if isinstance(x, torch.Tensor):
            parts.append(f"tensor{tuple(x.shape)}" if x.numel() > 1 else f"{float(x):.5g}")
        else:
            parts.append(repr(x)[:60])
    return ", ".join(parts)


def compare_function(
    name: str,
    yours: Any,
    ours: Callable[..., Any],
    cases: Sequence[Tuple[str, Tuple[Any, ...], Dict[str, Any]]],
    mistakes: Sequence[Tuple[str, Callable[..., Any]]] = (),
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> CheckResult:
    """Run ``yours`` and ``ours`` on each ``(label, args, kwargs)`` case and explain the first
    difference: an exception, another type or shape, or a known mistake (``(explanation,
    function that makes it)``, tried in order); else the values side by side."""
    if not callable(yours):
        return CheckResult(name, False, f"✗ {name}: expected a function, got {type(yours).__name__}")
    worst = 0.0
    for label, args, kwargs in cases:
        expected = ours(*_clone(args), **_clone(kwargs))
        try:
            got = yours(*_clone(args), **_clone(kwargs))
        except Exception as error:
            return CheckResult(name, False, f"✗ {name} ({label}): yours raised {type(error).__name__}: {error}")
        if _same(got, expected, atol, rtol):
            for x, y in zip(_as_tuple(got), _as_tuple(expected)):
                x, y = torch.as_tensor(x).float(), torch.as_tensor(y).float()
                worst = max(worst, float((x - y).abs().max()) if x.numel() else 0.0)
            continue
        if len(_as_tuple(got)) != len(_as_tuple(expected)):
            why = f"yours returned {len(_as_tuple(got))} value(s), ours {len(_as_tuple(expected))}"
            return CheckResult(name, False, f"✗ {name} ({label}): {why}")
        for a, b in zip(_as_tuple(got), _as_tuple(expected)):
            a_shape, b_shape = tuple(torch.as_tensor(a).shape), tuple(torch.as_tensor(b).shape)
            if a_shape != b_shape:
                return CheckResult(name, False, f"✗ {name} ({label}): yours has shape {a_shape}, ours {b_shape}")
        for explanation, mistaken in mistakes:
            try:
                planted = mistaken(*_clone(args), **_clone(kwargs))
            except Exception:
                continue
            if not _same(planted, expected, atol, rtol) and _same(got, planted, atol, rtol):
                return CheckResult(name, False, f"✗ {name} ({label}): {explanation}")
        return CheckResult(name, False, f"✗ {name} ({label}): yours gave {_describe(got)}, "
                                        f"ours {_describe(expected)}")
    plural = "case" if len(cases) == 1 else "cases"
    return CheckResult(name, True, f"✓ {name}: yours matches ours on {len(cases)} {plural} "
                                   f"(largest difference {worst:.2g})", worst)


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def lessons_with_turns() -> List[str]:
    return sorted({turn.lesson for turn in all_turns().values()})
