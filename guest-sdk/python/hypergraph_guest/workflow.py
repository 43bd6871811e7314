"""Durable orchestration for workflow components (``hypergraph:workflow/workflow``).

The world must include ``hypergraph:task/workflow@0.1.0``. A workflow is re-executed from the start
in a fresh instance every time it resumes, and every call below that was already answered is
answered again from its journal: children that completed never run twice. Keep workflow code
deterministic in what it calls (clocks and random numbers are journaled, so using them is fine).

Inputs and outputs are JSON, converted against the child task's WIT signature: pass dataclasses,
dicts, lists or plain values, and give ``type`` to get a dataclass (or ``list[...]``, ...) back.

::

    from hypergraph_guest import workflow

    children = workflow.start_all("transcripts/transcribe", tracks)   # fan-out
    transcripts = workflow.join(children, type=Transcript)           # raises ChildError
    title = workflow.call("transcripts/title", {"topics": topics})
    workflow.sleep(3600)
    approval = workflow.wait_event("approved:42", timeout=86400)
"""

import datetime
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Type, TypeVar, Union

from ._bindings import imports
from ._json import dumps, from_json, loads

__all__ = [
    "Child",
    "ChildError",
    "StartError",
    "start",
    "start_all",
    "join",
    "call",
    "sleep",
    "wait_event",
]

T = TypeVar("T")
Seconds = Union[int, float, datetime.timedelta]


class StartError(Exception):
    """A child could not be started (unknown task, input that does not fit its signature);
    nothing was started."""

    def __init__(self, task: str, message: str):
        super().__init__(f"cannot start `{task}`: {message}")
        self.task = task
        self.message = message


class ChildError(Exception):
    """A child failed (after its retries).

    ``kind`` is ``application`` (the child returned the ``err`` case; ``value`` holds it, parsed
    from JSON), ``trap``, ``timeout``, ``memory_limit``, ``stack_overflow``, ``exit``, ``host``
    or ``cancelled``; ``decode`` when its output did not convert to the requested type.
    """

    APPLICATION = "application"
    DECODE = "decode"

    def __init__(self, task: str, kind: str, message: str, value: Any = None):
        super().__init__(f"child `{task}` failed ({kind}): {message}")
        self.task = task
        self.kind = kind
        self.message = message
        self.value = value

    def is_application(self) -> bool:
        """True when the child returned an application error (``value`` holds it)."""
        return self.kind == self.APPLICATION


@dataclass(frozen=True)
class Child:
    """A started child: its position among this workflow's children, and its task."""

    index: int
    task: str


def _input(value: Any) -> str:
    return dumps(value)


def _millis(duration: Seconds) -> int:
    if isinstance(duration, datetime.timedelta):
        duration = duration.total_seconds()
    if duration < 0:
        raise ValueError("a duration cannot be negative")
    return int(round(duration * 1000))


def _child_error(task: str, raw) -> ChildError:
    value = None
    if raw.value is not None:
        try:
            value = loads(raw.value)
        except ValueError:
            value = raw.value
    return ChildError(task, raw.kind, raw.message, value)


def _output(task: str, text: str, type: Optional[Type[T]]) -> Any:
    try:
        return loads(text, type)
    except (TypeError, ValueError) as e:
        raise ChildError(task, ChildError.DECODE, f"its output {text} does not fit: {e}") from None


def start(task: str, input: Any = None) -> Child:
    """Starts task ``task`` (``<deployment>/<function>``) with ``input``, converted to JSON by
    :func:`~hypergraph_guest.to_json`: an object (dict or dataclass) keyed by parameter name, or
    the bare value for a task with one parameter. Raises :class:`StartError`."""
    raw = imports("workflow")
    try:
        index = raw.start(task, _input(input))
    except Exception as e:  # componentize_py_types.Err carries the host's message
        raise StartError(task, str(getattr(e, "value", e))) from None
    return Child(index, task)


def start_all(task: str, inputs: Iterable[Any]) -> List[Child]:
    """Starts one child of ``task`` per input, all running in parallel."""
    return [start(task, item) for item in inputs]


def join(
    children: Iterable[Child], type: Optional[Type[T]] = None, return_exceptions: bool = False
) -> List[Any]:
    """Waits until every child has finished and returns their outputs, in order (converted to
    ``type`` when given). A failed child raises its :class:`ChildError` (the first one, after all
    have finished), or with ``return_exceptions=True`` its error takes its place in the list."""
    children = list(children)
    results = imports("workflow").join([c.index for c in children])
    out: List[Any] = []
    for child, result in zip(children, results):
        if result.__class__.__name__ == "Err":
            item: Any = _child_error(child.task, result.value)
        else:
            try:
                item = _output(child.task, result.value, type)
            except ChildError as e:
                item = e
        if isinstance(item, ChildError) and not return_exceptions:
            raise item
        out.append(item)
    return out


def call(task: str, input: Any = None, type: Optional[Type[T]] = None) -> Any:
    """Starts one child and waits for its output (converted to ``type`` when given). Raises
    :class:`StartError` or :class:`ChildError`."""
    return join([start(task, input)], type)[0]


def sleep(duration: Seconds) -> None:
    """Sleeps durably for ``duration`` seconds (or a ``timedelta``): the timer survives restarts
    and no instance is held while it runs."""
    imports("workflow").sleep(_millis(duration))


def wait_event(
    name: str, timeout: Optional[Seconds] = None, type: Optional[Type[T]] = None
) -> Any:
    """Waits for the next event ``name`` (``hypergraph events send <name> --payload ...``) and
    returns its payload (converted to ``type`` when given), or ``None`` when ``timeout`` seconds
    passed first."""
    payload = imports("workflow").wait_event(name, None if timeout is None else _millis(timeout))
    return None if payload is None else loads(payload, type)
