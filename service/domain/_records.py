"""Records as JSON: the one converter that reads and writes ``meta.json`` and the job files.

Reading is lenient, because these files outlive the server that wrote them: a missing key takes
its field's default, a key the record does not know is ignored, and a sub-record that does not
parse (from an older or damaged file) reads as None or as its defaults instead of failing the
whole file. Each record module registers how its own records read (:func:`optional`,
:func:`defaults_when_malformed`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import cattrs
from cattrs.gen import make_dict_structure_fn

T = TypeVar("T")

converter = cattrs.Converter()
# What a malformed value raises while it is read: cattrs' own errors and the constructors'.
MALFORMED = (cattrs.BaseValidationError, KeyError, TypeError, ValueError)


def structure(raw: Mapping[str, Any], cls: type[T]) -> T:
    return converter.structure(raw, cls)


def unstructure(record: object) -> Any:
    """JSON-ready: records as dicts (in field order), tuples as lists once dumped."""
    return converter.unstructure(record)


def lenient(value: object, cls: type[T]) -> T | None:
    """``value`` read as a ``cls``, or None when it is absent or does not parse."""
    if not isinstance(value, Mapping):
        return None
    try:
        return structure(value, cls)
    except MALFORMED:
        return None


def optional(cls: type[T], read: Callable[[object], T | None] | None = None) -> None:
    """Read an optional ``cls`` field with :func:`lenient`, or with ``read``: the reader of a
    record that parses itself."""
    parse = read or (lambda value: lenient(value, cls))
    converter.register_structure_hook(cls | None, lambda value, _: parse(value))


def defaults_when_malformed(cls: type[T]) -> None:
    """Read a ``cls`` field as ``cls()`` (every field at its default) when it does not parse."""
    parse = make_dict_structure_fn(cls, converter)

    def hook(value: object, _: object) -> T:
        try:
            return parse(value if isinstance(value, Mapping) else {}, cls)
        except MALFORMED:
            return cls()

    converter.register_structure_hook(cls, hook)


def writes(cls: type[T], write: Callable[[T], Any]) -> None:
    """Write a ``cls`` with ``write``: a record whose file format is its own."""
    converter.register_unstructure_hook(cls, write)


def reads(kind: object, read: Callable[[object], Any]) -> None:
    """Read every field of type ``kind`` (a generic such as ``dict[str, float]`` too) with
    ``read``; registered before the records that hold such fields are first read."""
    converter.register_structure_hook_func(lambda t: t == kind, lambda value, _: read(value))
