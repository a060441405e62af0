"""Pydantic's validation errors, as lines that name each key the way the user wrote it.

`data.0` is `data` when `data:` was a single spec; an unknown key names the closest valid one at its place.
"""

from __future__ import annotations

import typing

from pydantic import BaseModel, ValidationError

from posttrain.errors import closest, cut


def error_lines(error: ValidationError, prefix: str = "", model: type[BaseModel] | None = None,
                raw=None) -> list[str]:
    lines = []
    for item in error.errors():
        loc = _as_written(item["loc"], raw)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "missing (required)"
        elif item["type"] == "extra_forbidden":
            key = loc.pop()
            message = f"unknown key {key!r}{closest(key, _fields_at(model, loc))}"
        message = cut(message, 500)  # a validator may quote the value, which can be any size
        where = ".".join([prefix] * bool(prefix) + loc)
        if not where and message.startswith("stages."):  # a check across stages says which stage itself
            lines.append(message)
            continue
        lines.append(f"{where or '(top level)'}: {message}")
    return lines


def _as_written(loc, raw) -> list[str]:
    """The location as the user wrote it: `data.0` is `data` when `data:` was a single spec."""
    out, node = [], raw
    for part in loc:
        if isinstance(part, int) and not isinstance(node, list):
            continue
        out.append(str(part))
        node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
    return out


def _has(node, part) -> bool:
    return part in node if isinstance(node, dict) else isinstance(part, int) and part < len(node)


def _fields_at(model, loc: list[str]) -> list[str]:
    """The valid keys of the config model at `loc`, for the did-you-mean hint."""
    current = model
    for part in loc:
        if current is None or part.isdigit():
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = None
        pending = [field.annotation]
        while pending:
            annotation = pending.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                current = annotation
                break
            pending.extend(typing.get_args(annotation))
    return list(current.model_fields) if current is not None else []
