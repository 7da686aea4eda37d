"""The sync's expression builder compiled to Clarity's ``filter=`` language.

Each statement is checked against the attributes ``/describe/issues`` reports: an unknown field,
or an operator that does not fit the field's type, is one line naming the statement. Values are
written as the type wants: strings and dates single-quoted with ``\\`` escapes, lookups as
their value's id (a display value is looked up), numbers and booleans bare.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Final

from . import Statement, SyncSettings
from .client import quote

__all__ = ["ExpressionError", "compile_expression"]

_ORDER: Final = ("=", "!=", ">", ">=", "<", "<=", "in")
#: dataType -> the operators that fit it
FITTING: Final[Mapping[str, tuple[str, ...]]] = {
    "string": (*_ORDER, "startsWith", "endsWith", "contains"),
    "number": _ORDER,
    "integer": _ORDER,
    "date": _ORDER,
    "lookup": ("=", "!=", "in"),
    "boolean": ("=", "!="),
}


class ExpressionError(ValueError):
    """A statement Clarity would refuse: one line."""


def _literal(
    statement: Statement, data_type: str, value: Any, lookup: Callable[[str, Any], str]
) -> str:
    where = f"sync.expression: ({statement.field} {statement.op} {value!r})"
    if data_type in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExpressionError(f"{where}: {statement.field} is a {data_type}; give a number")
        return repr(value)
    if data_type == "boolean":
        if not isinstance(value, bool):
            raise ExpressionError(f"{where}: {statement.field} takes true or false")
        return "true" if value else "false"
    if data_type == "lookup":
        return quote(lookup(statement.field, value))
    if data_type == "date":
        try:
            dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ExpressionError(f"{where}: {statement.field} is a date; use ISO 8601") from None
    return quote(str(value))


def compile_expression(
    sync: SyncSettings,
    attributes: Mapping[str, Mapping[str, Any]],
    lookup: Callable[[str, Any], str],
) -> str:
    """The ``filter=`` text of the expression (``""`` when it is empty: every issue).
    ``lookup(attribute, value)`` answers a lookup value's id."""
    parts = []
    for statement in sync.expression:
        attr = attributes.get(statement.field)
        if attr is None:
            raise ExpressionError(
                f"sync.expression: unknown field {statement.field!r}; issues have"
                f" {', '.join(sorted(attributes))}"
            )
        data_type = str(attr.get("dataType", "string"))
        fits = FITTING.get(data_type, ("=", "!="))
        if statement.op not in fits:
            raise ExpressionError(
                f"sync.expression: {statement.op!r} does not fit {statement.field}"
                f" ({data_type}); use {' '.join(fits)}"
            )
        values = statement.value if isinstance(statement.value, tuple) else (statement.value,)
        literals = [_literal(statement, data_type, v, lookup) for v in values]
        if statement.op == "in":
            parts.append(f"({statement.field} in ({', '.join(literals)}))")
        else:
            parts.append(f"({statement.field} {statement.op} {literals[0]})")
    return f" {sync.join} ".join(parts)
