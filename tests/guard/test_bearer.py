"""One bearer parser: every adapter reads the same token (or the same refusal) from the
same Authorization headers as :func:`authgate.bearer.parse_bearer`, the parser the server
shares."""

from __future__ import annotations

from collections.abc import Callable

import flask
import pytest

from authgate.bearer import parse_bearer
from authgate.errors import AuthgateError
from authgate.guard.asgi import token_from_scope
from authgate.guard.flask import request_token

HEADERS = [
    [],
    ["Bearer abc"],
    ["bearer abc"],
    ["BEARER   abc  "],
    ["  Bearer abc"],
    ["\tBearer abc\t"],
    ["Bearer abc\xa0"],
    ["\xa0Bearer abc"],
    ["Bearer\xa0abc"],
    ["Bearer \x85"],
    ["Bearer\tabc"],
    ["B\xe9arer abc"],
    ["Bearer"],
    ["Bearer "],
    ["Bearerabc"],
    ["Basic dXNlcjpwdw=="],
    ["Bearer a", "Bearer b"],
    ["Bearer a", "Basic b"],
    ["Basic b", "Bearer a"],
]


def outcome(read: Callable[[], str | None]) -> str:
    try:
        token = read()
    except AuthgateError as exc:
        return exc.code
    return "authentication_required" if token is None else f"token {token!r}"


@pytest.mark.parametrize("values", HEADERS, ids=repr)
def test_parser_differential_every_adapter_reads_the_same_token(values: list[str]) -> None:
    shared = outcome(lambda: parse_bearer(values))
    scope = {"type": "http", "headers": [(b"authorization", v.encode("latin-1")) for v in values]}
    assert outcome(lambda: token_from_scope(scope, None)) == shared
    if len(values) <= 1:  # WSGI joins a repeated header into one value
        headers = {"Authorization": values[0]} if values else {}
        with flask.Flask(__name__).test_request_context(headers=headers):
            assert outcome(lambda: request_token(None)) == shared


def test_parser_differential_a_repeated_header_is_refused_never_picked() -> None:
    # Taking the first (or the last) of two headers lets a proxy and the app disagree on
    # who is calling: both are refused, whatever the order.
    for values in (["Bearer a", "Bearer b"], ["Bearer a", "Basic b"], ["Basic b", "Bearer a"]):
        assert outcome(lambda values=values: parse_bearer(values)) == "invalid_request"


def test_parser_differential_only_ascii_whitespace_is_trimmed() -> None:
    assert parse_bearer(["Bearer abc \t"]) == "abc"
    assert outcome(lambda: parse_bearer(["Bearer abc\xa0"])) == "token 'abc\\xa0'"
    assert outcome(lambda: parse_bearer(["\xa0Bearer abc"])) == "authentication_required"


def test_one_string_is_not_a_list_of_header_values() -> None:
    with pytest.raises(TypeError):
        parse_bearer("Bearer abc")
