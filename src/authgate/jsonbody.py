"""The one parser of request bodies: strict JSON objects with capped nesting.

It applies the rules of the token codec's JSON (UTF-8 only, no BOM, no duplicate members,
no NaN/Infinity, no lone surrogates, nesting capped) to HTTP request bodies, so that a
body never reaches a recursive parser unbounded and two parsers never read one body two
ways.
"""

from __future__ import annotations

from typing import Any, Final

from authgate.errors import InvalidJSON, MalformedToken
from authgate.jose import MAX_JSON_DEPTH, loads_object

MAX_BODY_DEPTH: Final = MAX_JSON_DEPTH


def loads_body(data: bytes, *, max_depth: int = MAX_BODY_DEPTH) -> dict[str, Any]:
    """Parse a request body as one strict JSON object.

    Raises InvalidJSON when ``data`` is not valid UTF-8 JSON, holds a duplicate member,
    NaN/Infinity or a lone surrogate, nests deeper than ``max_depth``, or is not an object.
    """
    try:
        return loads_object(data, max_depth=max_depth)
    except MalformedToken as exc:
        raise InvalidJSON(exc.reason) from None


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type value ('' when absent)."""
    if content_type is None:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


__all__ = ["MAX_BODY_DEPTH", "loads_body", "media_type"]
