"""Log lines of the current attempt, stored with the run (``hypergraph runs logs <run>``).

Each call appends one line; the message is stored verbatim. ``print`` works too: stdout and
stderr lines become log lines of the attempt (streams ``stdout``/``stderr``).
"""

from ._bindings import imports

__all__ = ["LEVELS", "log", "trace", "debug", "info", "warn", "error"]

LEVELS = ("trace", "debug", "info", "warn", "error")


def log(level: str, message: object) -> None:
    """Appends ``str(message)`` at ``level`` (one of :data:`LEVELS`)."""
    raw = imports("log")
    try:
        value = raw.Level[level.upper()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}") from None
    raw.log(value, str(message))


def trace(message: object) -> None:
    """A ``trace`` line."""
    log("trace", message)


def debug(message: object) -> None:
    """A ``debug`` line."""
    log("debug", message)


def info(message: object) -> None:
    """An ``info`` line."""
    log("info", message)


def warn(message: object) -> None:
    """A ``warn`` line."""
    log("warn", message)


def error(message: object) -> None:
    """An ``error`` line."""
    log("error", message)
