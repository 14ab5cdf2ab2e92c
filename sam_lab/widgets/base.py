"""What the widgets share: safe handling of every input, and an image with a prompt in its pixels.

The page writes the prompt into ``points`` ([[x, y, label], ...]) and ``box`` ([x0, y0, x1, y1]
or None), in the original image's pixels, and the buttons write ``command`` ({"name": "undo" |
"reset", "count": n}). A subclass says what a prompt does (``_apply_prompt``) and which state to
send back (``_push_state``); this class turns every input into one answer: the new state, an
``error`` message instead of an exception, ``received`` (what the kernel got, in words) and a
``revision`` counter the page (and the browser tests) wait on.
"""
from __future__ import annotations

from typing import Callable, Dict

import anywidget
import traitlets

# what a bad prompt, a missing image or a bad image raises: shown in the widget, never fatal
PROMPT_ERRORS = (ValueError, TypeError, RuntimeError)


class KernelWidget(anywidget.AnyWidget):
    """Every input from the page becomes one answer: state, ``error``, ``revision``."""

    display_width = traitlets.Int(512).tag(sync=True)  # CSS pixels; clicks map back whatever it is
    received = traitlets.Unicode("").tag(sync=True)  # what the kernel got from the last input
    error = traitlets.Unicode("").tag(sync=True)  # why the last input was refused ("" if it was not)
    revision = traitlets.Int(0).tag(sync=True)  # +1 after every input handled

    def __init__(self, **kwargs) -> None:
        self._pushing = False
        super().__init__(**kwargs)

    def _push_state(self) -> None:
        """Write the state into the traitlets (inside ``_pushing``, so no observer reacts)."""

    def _handle(self, action: Callable) -> None:
        """Run ``action``; show its error instead of raising; send the state back in one message."""
        try:
            action()
            error = ""
        except PROMPT_ERRORS as exc:
            error = str(exc)
        with self.hold_sync():
            self._pushing = True
            try:
                self._push_state()
            finally:
                self._pushing = False
            self.error = error
            self.revision += 1


class ClickableWidget(KernelWidget):
    """An image to click on: the prompt arrives in ``points`` / ``box``, buttons in ``command``."""

    image_url = traitlets.Unicode("").tag(sync=True)  # PNG data URL of the original image
    image_size = traitlets.List([0, 0]).tag(sync=True)  # [W, H] in pixels
    points = traitlets.List([]).tag(sync=True)  # [[x, y, label], ...]; label 1 object, 0 background
    box = traitlets.List(None, allow_none=True).tag(sync=True)  # [x0, y0, x1, y1] or None
    command = traitlets.Dict({}).tag(sync=True)  # {"name": "undo" | "reset", "count": n} from buttons

    def _apply_prompt(self, points, box) -> None:
        raise NotImplementedError

    def _commands(self) -> Dict[str, Callable]:
        return {}

    @traitlets.observe("points", "box")
    def _prompt_changed(self, change) -> None:
        if self._pushing:
            return
        self.received = describe_input(change["name"], change["new"], change["old"])
        self._handle(lambda: self._apply_prompt(self.points, self.box))

    @traitlets.observe("command")
    def _command_changed(self, change) -> None:
        name = (change["new"] or {}).get("name")
        commands = self._commands()
        if name in commands:
            self.received = f"kernel received {name}"
            self._handle(commands[name])


class SelectingWidget(ClickableWidget):
    """A clickable widget whose page also picks one of several results: ``selected``, handed
    to ``self.state.select``."""

    selected = traitlets.Int(0).tag(sync=True)

    @traitlets.observe("selected")
    def _selected_changed(self, change) -> None:
        if not self._pushing:
            self.received = f"kernel received selected = {change['new']}"
            self._handle(lambda: self.state.select(change["new"]))


def describe_input(name: str, value, previous) -> str:
    """What the kernel received, in words: the new point or box in original-image pixels, or
    the text."""
    try:
        if name == "text":
            return f"kernel received text {value!r}" if value else "kernel received: no text"
        if name == "box":
            if value is None:
                return "kernel received: no box"
            x0, y0, x1, y1 = (float(v) for v in value)
            return f"kernel received box (x0={x0:.2f}, y0={y0:.2f}, x1={x1:.2f}, y1={y1:.2f})"
        if value and len(value) > len(previous or []):
            x, y, label = value[-1]
            return f"kernel received point (x={float(x):.2f}, y={float(y):.2f}), label {label}"
        return f"kernel received {len(value or [])} points"
    except (TypeError, ValueError):
        return f"kernel received {name} = {value!r}"[:200]
