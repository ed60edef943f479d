"""Strict JSON for JOSE: UTF-8 objects only, no duplicates, no NaN/Infinity, capped depth."""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

import orjson

from authgate.errors import MalformedToken

MAX_JSON_DEPTH = 32
MAX_DEPTH = MAX_JSON_DEPTH  # the name the codec uses inside


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise MalformedToken("duplicate member in JSON object")
    return obj


def _constant(name: str) -> NoReturn:
    raise MalformedToken(f"non-finite number {name} in JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedToken("non-finite number in JSON")
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant, parse_float=_float)
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]
_JSON_WS = " \t\n\r"
# One pass folds every digit to '0' and every JSON whitespace to ' ', so that two substring
# searches can then find a long digit run and a quote followed by whitespace.
_FOLD = bytes.maketrans(b"123456789\t\n\r", b"000000000   ")
# orjson turns integers beyond 64 bits into floats: texts with such digit runs take the
# exact parser, which keeps every integer exact.
_LONG_DIGITS = b"0" * 19


def _depth_exceeds(text: str, limit: int) -> bool:
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _total_keys(value: Any) -> int:
    if type(value) is dict:
        return len(value) + sum(_total_keys(v) for v in value.values() if type(v) in (dict, list))
    if type(value) is list:
        return sum(_total_keys(v) for v in value if type(v) in (dict, list))
    return 0


def loads_object(data: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse ``data`` as a strict UTF-8 JSON object.

    Raises MalformedToken for a BOM, invalid UTF-8 (so UTF-16/32 too), duplicate
    members, NaN/Infinity or overflowing numbers, lone surrogates, nesting deeper
    than ``max_depth``, or any top-level value that is not an object.
    """
    objects = data.count(b"{")
    if objects + data.count(b"[") > max_depth and _depth_exceeds_bytes(data, max_depth):
        raise MalformedToken("JSON nesting is too deep")
    try:
        # orjson refuses invalid UTF-8, a BOM, NaN/Infinity, overflowing numbers and lone
        # surrogates; duplicate members are the one rule it does not keep (last one wins).
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if _LONG_DIGITS in data.translate(_FOLD):
            return _loads_exact(data)  # an integer orjson cannot hold
        raise MalformedToken("invalid JSON") from exc
    if type(obj) is not dict:
        raise MalformedToken("JSON value is not an object")
    # The compact form that our own tokens have: when ``data`` is byte for byte what orjson
    # writes for ``obj``, it holds every member of ``obj`` once, so no name was repeated,
    # and no integer was rounded to a float (orjson writes that as a float).
    if orjson.dumps(obj) == data:
        return obj
    folded = data.translate(_FOLD)
    if _LONG_DIGITS in folded:
        return _loads_exact(data)
    # Every member name is a string whose closing quote is followed by ':' (with no space
    # between when no quote is followed by whitespace), so '":' occurs at least once per
    # member. If that count equals the number of distinct names, no name was repeated;
    # otherwise the exact parser below decides.
    keys = len(obj) if objects == 1 else _total_keys(obj)
    if data.count(b'":') == keys and b'" ' not in folded:
        return obj
    return _loads_exact(data)


def _depth_exceeds_bytes(data: bytes, limit: int) -> bool:
    try:
        return _depth_exceeds(data.decode("utf-8"), limit)
    except UnicodeDecodeError as exc:
        raise MalformedToken("JSON is not valid UTF-8") from exc


def _loads_exact(data: bytes) -> dict[str, Any]:
    """The stdlib scanner with a duplicate-member hook: slower, decisive."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedToken("JSON is not valid UTF-8") from exc
    start = len(text) - len(text.lstrip(_JSON_WS))
    if text[start : start + 1] != "{":
        raise MalformedToken("JSON value is not an object")
    try:
        obj, end = _SCAN(text, start)
    except MalformedToken:
        raise
    except (ValueError, StopIteration, RecursionError, OverflowError, TypeError) as exc:
        raise MalformedToken("invalid JSON") from exc
    if end != len(text) and text[end:].strip(_JSON_WS):
        raise MalformedToken("trailing data after the JSON object")
    if "\\u" in text and _has_lone_surrogate(obj):
        raise MalformedToken("JSON string holds a lone surrogate")
    return obj  # type: ignore[no-any-return]


def _check_keys(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError("JSON object keys must be strings")
            _check_keys(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_keys(item)


def dumps(value: Any) -> bytes:
    """Serialize ``value`` as compact UTF-8 JSON; raise ValueError/TypeError if it cannot be
    (non-finite numbers, non-string keys, lone surrogates, unknown types)."""
    _check_keys(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )
