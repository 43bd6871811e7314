"""Facts about the invocation the task runs in; stable for the whole attempt."""

from ._bindings import imports

__all__ = ["run_id", "task_name", "attempt"]


def run_id() -> str:
    """The id of the run this attempt belongs to (a UUID string)."""
    return imports("context").run_id()


def task_name() -> str:
    """The full task name, ``<deployment>/<function>``."""
    return imports("context").task_name()


def attempt() -> int:
    """The attempt number of the current step, starting at 1."""
    return imports("context").attempt()
