"""The machinery behind every checker: same weights in, fixed inputs, first difference explained.

A stage is checked on a few :class:`Case` s. For each case we build ours, give every parameter
random values (also those SAM initialises to zero, such as relative-position tables, or a
mistake there would multiply by zero and stay invisible), copy them into the learner's module
with strict keys, run both on the same inputs and compare. The first difference is explained:

    1. output count or shape (with the permutation that would fix a transposed layout)
    2. output = k x ours (a scale mistake, named when k is a known factor such as sqrt(d))
    3. output = ours with a known mistake planted (each case lists its :class:`Mistake` s)
    4. otherwise: the largest difference and where it is
"""
from __future__ import annotations

import copy
import difflib
import itertools
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from unittest import mock

import torch
import torch.nn as nn

from ..modeling import attention as vit_attention_module
from ..modeling import two_way_transformer as two_way_module


@dataclass
class CheckResult:
    """What :func:`sam_lab.exercises.check` found. ``bool(result)`` is ``result.passed``."""

    stage: str
    passed: bool
    message: str
    max_abs_diff: Optional[float] = None

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"CheckResult(stage={self.stage!r}, passed={self.passed}, max_abs_diff={self.max_abs_diff})"


@dataclass
class Mistake:
    """A known mistake: ``variant(ours, run)`` gives the output ours would have if it made it."""

    explanation: str
    variant: Callable[[Any, Callable[[Any], Any]], Any]


@dataclass
class Case:
    """One configuration and one set of inputs.

    run(impl) -> output (a tensor or a tuple of tensors); ``impl`` is a module for module
    stages, the learner's callable for function stages. ``kwargs`` builds the module.
    """

    label: str
    run: Callable[[Any], Any]
    outputs: Sequence[str]  # a name per output
    axes: Sequence[str]  # a letter per axis per output, e.g. "BHWC"
    kwargs: Optional[Dict[str, Any]] = None
    mistakes: Sequence[Mistake] = ()
    shape_hint: Optional[Callable[[str, tuple, tuple], Optional[str]]] = None
    factors: Dict[str, Tuple[float, str]] = field(default_factory=dict)  # name: (k, advice)


class CheckFailed(Exception):
    """Raised inside a check with the friendly explanation; turned into a failed result."""

    def __init__(self, message: str, max_abs_diff: Optional[float] = None) -> None:
        super().__init__(message)
        self.max_abs_diff = max_abs_diff


# ----------------------------------------------------------------------------- weights

def load_ours_into(theirs: nn.Module, ours: nn.Module) -> None:
    """Copy our weights with strict keys; explain a naming or shape mismatch."""
    mine, yours = ours.state_dict(), theirs.state_dict()
    missing = [k for k in mine if k not in yours]
    unexpected = [k for k in yours if k not in mine]
    if missing or unexpected:
        lines = ["your module's parameter names differ from ours, so our weights cannot be copied in."]
        for key in missing:
            close = difflib.get_close_matches(key, unexpected, n=1)
            hint = f" (you have {close[0]!r} - rename it?)" if close else ""
            lines.append(f"  missing   {key!r} {tuple(mine[key].shape)}{hint}")
        for key in unexpected:
            lines.append(f"  unexpected {key!r} {tuple(yours[key].shape)}")
        lines.append("Ours names them: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in mine.items()))
        raise CheckFailed("\n".join(lines))
    wrong = [k for k in mine if mine[k].shape != yours[k].shape]
    if wrong:
        raise CheckFailed(
            "some of your parameters have other shapes than ours: "
            + "; ".join(f"{k}: ours {tuple(mine[k].shape)}, yours {tuple(yours[k].shape)}" for k in wrong)
        )
    theirs.load_state_dict(mine, strict=True)


# ----------------------------------------------------------------------------- attention mistakes

ATTENTION_MISTAKES = {
    "no_scale": "the attention logits are not divided by {sqrt_d}: check the 1/sqrt(d) scaling "
    "(logits = q k^T / sqrt(d))",
    "times_sqrt_d": "the logits are multiplied by {sqrt_d} instead of divided by it: check the "
    "1/sqrt(d) scaling",
    "divide_by_d": "the logits are divided by {d} instead of {sqrt_d}: check the 1/sqrt(d) scaling",
    "softmax_over_queries": "the softmax runs over the wrong axis (the queries): each query's "
    "weights over the keys must sum to 1, so use softmax(dim=-1) on (..., queries, keys) logits",
    "transposed": "the attention matrix is transposed: compute q k^T (queries x keys), not k q^T",
    "no_bias": "the relative position bias is missing: add q . R_h[qy - ky] + q . R_w[qx - kx] "
    "(decomposed_rel_pos_bias) to the logits before the softmax",
    "scaled_bias": "the relative position bias is scaled by 1/sqrt(d) too (or built from the scaled "
    "q): SAM adds the bias of the *unscaled* q to q k^T / sqrt(d)",
}


def _mistaken_attend(kind: str):
    def attend(q, k, v, bias=None, name=""):
        d = q.shape[-1]
        scale = {"no_scale": 1.0, "times_sqrt_d": d**0.5, "divide_by_d": 1.0 / d}.get(kind, d**-0.5)
        logits = (q @ k.transpose(-2, -1)) * scale  # (B, h, Nq, Nk)
        if kind == "transposed":
            logits = logits.transpose(-2, -1)
        if bias is not None and kind != "no_bias":
            logits = logits + (bias * d**-0.5 if kind == "scaled_bias" else bias)
        return logits.softmax(dim=-2 if kind == "softmax_over_queries" else -1) @ v

    return attend


@contextmanager
def _attend_replaced(kind: str):
    fake = _mistaken_attend(kind)
    with mock.patch.object(vit_attention_module, "attend", fake), mock.patch.object(
        two_way_module, "attend", fake
    ):
        yield


def attention_mistakes(head_dim: Optional[int] = None, with_bias: bool = False) -> List[Mistake]:
    """Ours with each attention mistake planted (every attention in the module gets it).
    ``head_dim`` is quoted in the explanations when the module's attentions share one."""
    kinds = [k for k in ATTENTION_MISTAKES if with_bias or k not in ("no_bias", "scaled_bias")]
    if head_dim is None:
        text = dict(d="head_dim", sqrt_d="sqrt(head_dim)")
    else:
        text = dict(d=f"head_dim = {head_dim}", sqrt_d=f"sqrt(head_dim) = {head_dim**0.5:.4g}")

    def variant(kind):
        def run_with(ours, run):
            with _attend_replaced(kind):
                return run(ours)

        return run_with

    return [Mistake(ATTENTION_MISTAKES[k].format(**text), variant(k)) for k in kinds]


def attention_factors(head_dim: int) -> Dict[str, Tuple[float, str]]:
    advice = "check the 1/sqrt(d) scaling"
    return {"sqrt(head_dim)": (head_dim**0.5, advice), "head_dim": (float(head_dim), advice)}


def modified_copy(ours: nn.Module, change: Callable[[nn.Module], None]) -> nn.Module:
    """A deep copy of ``ours`` with ``change`` applied (to plant a mistake)."""
    other = copy.deepcopy(ours)
    change(other)
    return other


# ----------------------------------------------------------------------------- comparing

def as_outputs(value: Any, names: Sequence[str]) -> Tuple[Any, ...]:
    outputs = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(outputs) != len(names):
        raise CheckFailed(
            f"expected {len(names)} output(s) ({', '.join(names)}), got {len(outputs)}"
        )
    return outputs


def _tolerance(reference: torch.Tensor) -> float:
    return 1e-4 * max(1.0, float(reference.abs().max()) if reference.numel() else 1.0)


def _close(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> bool:
    return all(
        x.shape == y.shape and (x.numel() == 0 or float((x - y).abs().max()) <= _tolerance(y))
        for x, y in zip(a, b)
    )


def _explain_shape(case: Case, name: str, axes: str, ours: torch.Tensor, theirs: torch.Tensor) -> str:
    want, got = tuple(ours.shape), tuple(theirs.shape)
    text = f"`{name}` has shape {got}, ours has {want} = {_named(axes, range(len(want)))}"
    hint = case.shape_hint(name, want, got) if case.shape_hint else None
    if hint:
        return f"{text}: {hint}"
    if len(got) == len(want) and sorted(got) == sorted(want):
        # got[i] == want[perm[i]]: which of our axes sits at each of your positions
        orders = itertools.permutations(range(len(want)))
        perms = [p for p in orders if all(got[i] == want[j] for i, j in enumerate(p))]
        fits = [p for p in perms if torch.equal(theirs.permute(*_inverse(p)), ours)] or perms
        p = fits[0]
        return (
            f"{text}: it looks like {_named(axes, p)} where {_named(axes, range(len(want)))} was "
            f"expected; .permute{tuple(_inverse(p))} would put the axes in our order"
        )
    return text


def _named(axes: str, order) -> str:
    return "(" + ", ".join(axes[i] for i in order) + ")"


def _inverse(perm: Sequence[int]) -> List[int]:
    inverse = [0] * len(perm)
    for i, j in enumerate(perm):
        inverse[j] = i
    return inverse


def _explain_scale(theirs: torch.Tensor, ours: torch.Tensor, factors) -> Optional[str]:
    denominator = float((ours * ours).sum())
    if denominator == 0.0:
        return None
    k = float((theirs * ours).sum()) / denominator
    if abs(k - 1.0) < 1e-3 or float((theirs - k * ours).abs().max()) > _tolerance(k * ours):
        return None
    text = f"yours is {k:.4g} x ours everywhere, off by a factor of {k:.4g}"
    for label, (value, advice) in factors.items():
        for factor, how in ((value, ""), (1.0 / value, "1/")):
            if abs(k / factor - 1.0) < 1e-2:
                return f"{text} = {how}{label}: {advice}"
    return text + ": a constant factor is missing or extra somewhere"


def compare(case: Case, ours_impl: Any, ours_out: Any, theirs_out: Any) -> float:
    """Raise :class:`CheckFailed` with the first explanation that fits; else the max difference."""
    names = case.outputs
    ours_t = as_outputs(ours_out, names)
    theirs_t = as_outputs(theirs_out, names)
    for name, axes, o, t in zip(names, case.axes, ours_t, theirs_t):
        if not isinstance(t, torch.Tensor):
            raise CheckFailed(f"`{name}` should be a torch.Tensor, got {type(t).__name__}")
        if t.shape != o.shape:
            raise CheckFailed(_explain_shape(case, name, axes, o, t))
        if not torch.isfinite(t.float()).all():
            raise CheckFailed(f"`{name}` contains NaN or inf values")
    diffs = [float((t.float() - o).abs().max()) if o.numel() else 0.0 for o, t in zip(ours_t, theirs_t)]
    worst = max(diffs)
    if _close(theirs_t, ours_t):
        return worst
    index = next(i for i, (o, t) in enumerate(zip(ours_t, theirs_t)) if not _close([t], [o]))
    name, o, t = names[index], ours_t[index], theirs_t[index].float()
    scale = _explain_scale(t, o, case.factors)
    if scale:
        raise CheckFailed(f"`{name}`: {scale}", worst)
    for mistake in case.mistakes:
        try:
            planted = as_outputs(mistake.variant(ours_impl, case.run), names)
        except Exception:  # the mistake cannot happen for these inputs (e.g. a shape clash)
            continue
        if not _close(planted, ours_t) and _close(theirs_t, planted):
            raise CheckFailed(mistake.explanation, worst)
    where = tuple(int(i) for i in torch.unravel_index((t - o).abs().argmax(), o.shape))
    position = ", ".join(f"{a}={i}" for a, i in zip(case.axes[index], where))
    raise CheckFailed(
        f"`{name}` differs from ours by up to {diffs[index]:.3g}, the largest at ({position}): "
        f"yours {float(t[where]):.5g}, ours {float(o[where]):.5g}",
        worst,
    )
