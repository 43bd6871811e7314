"""The JSON mapping of WIT values, for typed task inputs and outputs.

Children's inputs and outputs, kv values and events cross the host boundary as JSON text, converted
against the WIT signature of the task on the other side (see the README's "JSON and WIT"):
records are objects keyed by their kebab-case field names, options are ``null`` or the value,
enums are the case name, lists and tuples are arrays.

:func:`to_json` turns Python values into that shape: dataclasses become objects whose snake_case
field names are written in kebab-case, enums their lowercase name, tuples and sets lists, bytes
base64 text (which a ``list<u8>`` accepts). :func:`from_json` goes back, guided by a type: a
dataclass (fields found by kebab-case or exact name), ``list[T]``, ``dict[str, T]``,
``tuple[...]``, ``Optional[T]``, an ``Enum``, or a primitive; without a type it returns the plain
JSON value (dicts and lists).
"""

import base64
import dataclasses
import enum
import json
import typing
from typing import Any, Optional, Type, TypeVar

__all__ = ["to_json", "from_json", "dumps", "loads"]

T = TypeVar("T")


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def to_json(value: Any) -> Any:
    """``value`` as a plain JSON-able value (dicts, lists, str, int, float, bool, None)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            _kebab(f.name): to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
    if isinstance(value, enum.Enum):
        return _kebab(value.name.lower())
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_json(v) for v in value), key=json.dumps)
    raise TypeError(
        f"cannot convert {type(value).__name__} to JSON: use dataclasses, dicts, lists, "
        "str, int, float, bool or None"
    )


def _field(data: dict, name: str) -> Any:
    for key in (_kebab(name), name):
        if key in data:
            return data[key]
    return dataclasses.MISSING


def from_json(data: Any, type: Optional[Type[T]] = None, path: str = "$") -> Any:
    """``data`` (a parsed JSON value) converted to ``type``; errors name the JSON path."""
    if type is None or type is Any:
        return data
    origin = typing.get_origin(type)
    args = typing.get_args(type)
    if origin is typing.Union:
        if data is None and _NONE in args:
            return None
        errors = []
        for option in args:
            if option is _NONE:
                continue
            try:
                return from_json(data, option, path)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise TypeError("; ".join(errors) or f"{path}: no type matches {data!r}")
    if dataclasses.is_dataclass(type):
        if not isinstance(data, dict):
            raise TypeError(f"{path}: expected an object for {type.__name__}, found {data!r}")
        hints = typing.get_type_hints(type)
        kwargs = {}
        for f in dataclasses.fields(type):
            raw = _field(data, f.name)
            if raw is dataclasses.MISSING:
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                    continue
                raw = None
            kwargs[f.name] = from_json(raw, hints.get(f.name), f"{path}.{_kebab(f.name)}")
        return type(**kwargs)
    if origin in (list, typing.List) or type is list:
        if not isinstance(data, list):
            raise TypeError(f"{path}: expected an array, found {data!r}")
        item = args[0] if args else None
        return [from_json(v, item, f"{path}[{i}]") for i, v in enumerate(data)]
    if origin in (tuple, typing.Tuple) or type is tuple:
        if not isinstance(data, list):
            raise TypeError(f"{path}: expected an array, found {data!r}")
        if args and args[-1] is not Ellipsis:
            if len(args) != len(data):
                raise TypeError(f"{path}: expected {len(args)} items, found {len(data)}")
            return tuple(from_json(v, t, f"{path}[{i}]") for i, (v, t) in enumerate(zip(args, data)))
        item = args[0] if args else None
        return tuple(from_json(v, item, f"{path}[{i}]") for i, v in enumerate(data))
    if origin in (dict, typing.Dict) or type is dict:
        if not isinstance(data, dict):
            raise TypeError(f"{path}: expected an object, found {data!r}")
        item = args[1] if len(args) == 2 else None
        return {k: from_json(v, item, f"{path}.{k}") for k, v in data.items()}
    if isinstance(type, enum.EnumMeta):
        for member in type:
            if data in (member.name, member.name.lower(), _kebab(member.name.lower()), member.value):
                return member
        raise ValueError(f"{path}: {data!r} is not a case of {type.__name__}")
    if type is bytes:
        if isinstance(data, str):
            return base64.b64decode(data)
        if isinstance(data, list):
            return bytes(data)
        raise TypeError(f"{path}: expected bytes (base64 text or an array), found {data!r}")
    if type is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if type in (bool, int, float, str):
        if isinstance(data, type) and not (type is int and isinstance(data, bool)):
            return data
        raise TypeError(f"{path}: expected {type.__name__}, found {data!r}")
    return data


_NONE = None.__class__


def dumps(value: Any) -> str:
    """``value`` as compact JSON text (see :func:`to_json`)."""
    return json.dumps(to_json(value), separators=(",", ":"))


def loads(text: str, type: Optional[Type[T]] = None) -> Any:
    """Parses JSON ``text``, converted to ``type`` when given (see :func:`from_json`)."""
    return from_json(json.loads(text), type)
