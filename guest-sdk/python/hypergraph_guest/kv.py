"""Durable key-value storage, scoped to the deployment the task runs in.

Reads are journaled (a replay sees the same values without touching the store). Writes are
buffered: this attempt's later reads see them at once, other runs only once the attempt succeeds;
a failed attempt leaves no partial writes. Keys are at most 512 bytes, values at most 1 MiB.
"""

from typing import Any, List, Optional, Type, TypeVar, Union

from ._bindings import imports
from ._json import dumps, from_json, loads

__all__ = ["get", "set", "delete", "list_keys", "get_string", "set_string", "get_json", "set_json"]

T = TypeVar("T")


def get(key: str) -> Optional[bytes]:
    """The bytes stored under ``key``, or ``None``."""
    return imports("kv").get(key)


def set(key: str, value: Union[bytes, bytearray, str]) -> None:  # noqa: A001 - mirrors the WIT name
    """Stores ``value`` (bytes, or text stored as UTF-8) under ``key``."""
    if isinstance(value, str):
        value = value.encode()
    imports("kv").set(key, bytes(value))


def delete(key: str) -> None:
    """Removes ``key``; removing a missing key is not an error."""
    imports("kv").delete(key)


def list_keys(prefix: str = "") -> List[str]:
    """The keys starting with ``prefix``, in byte order (at most 10,000)."""
    return imports("kv").list_keys(prefix)


def get_string(key: str) -> Optional[str]:
    """The value under ``key`` as text (``None`` when missing or not UTF-8)."""
    value = get(key)
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None


def set_string(key: str, value: str) -> None:
    """Stores ``value`` as UTF-8 text."""
    set(key, value.encode())


def get_json(key: str, type: Optional[Type[T]] = None) -> Any:
    """The JSON value under ``key`` (converted to ``type`` when given, e.g. a dataclass), or
    ``None`` when missing."""
    value = get(key)
    if value is None:
        return None
    data = loads(value.decode())
    return from_json(data, type) if type is not None else data


def set_json(key: str, value: Any) -> None:
    """Stores ``value`` (dataclasses, dicts, lists, ...) as JSON."""
    set(key, dumps(value).encode())
