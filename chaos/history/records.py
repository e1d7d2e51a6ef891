"""One serialisation for every record of a history: a dataclass is its JSON, field by field.

``to_dict`` is shallow (values are already JSON-shaped; ``dataclasses.asdict`` would deep-copy every payload),
except that a nested record, or a list of them, becomes its dict and a read-only mapping a plain dict. An event
class's ``type`` (a ClassVar) comes first. ``from_dict`` keeps only the keys the class knows (newer writers may
add fields, older readers must not choke) and rebuilds nested records from the field's annotation.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

R = TypeVar("R", bound="Record")


class Record:
    """Mixin for a dataclass written to and read from a history as a JSON object."""

    def to_dict(self) -> dict[str, Any]:
        kind = getattr(type(self), "type", None)
        head: dict[str, Any] = {"type": kind} if isinstance(kind, str) else {}
        return {**head, **{f.name: _plain(getattr(self, f.name)) for f in fields(self)}}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        nested = _nested_records(cls)  # type: ignore[arg-type]
        kw: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name in nested:
                record, many = nested[f.name]
                if many:
                    value = [record.from_dict(v) for v in value or ()]
                elif value is not None:
                    value = record.from_dict(value)
            kw[f.name] = value
        return cls(**kw)


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list) and any(isinstance(v, Record) for v in value):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return dict(value)
    return value


@functools.cache
def _nested_records(cls: type) -> dict[str, tuple[type[Record], bool]]:
    """field name -> (the record class it holds, whether it holds a list of them), from the annotations."""
    hints = typing.get_type_hints(cls)
    found: dict[str, tuple[type[Record], bool]] = {}
    for f in fields(cls):
        hint = hints.get(f.name)
        many = typing.get_origin(hint) is list
        args = typing.get_args(hint) if many or isinstance(hint, types.UnionType) else (hint,)
        for arg in args:
            if isinstance(arg, type) and issubclass(arg, Record):
                found[f.name] = (arg, many)
    return found
