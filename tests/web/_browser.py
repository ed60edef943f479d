"""A cookie-keeping HTTP client that behaves like a browser on the hosted pages: it reads
each form's CSRF token and posts forms the way a page does."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from _support.http import PASSWORD
from _support.live import AuthgateServer

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_in(page: str) -> str:
    """The CSRF token of the page's first form."""
    found = _CSRF.search(page)
    assert found is not None, "no CSRF field on the page"
    return html.unescape(found.group(1))


@contextmanager
def browser(server: AuthgateServer) -> Iterator[httpx.Client]:
    """A fresh cookie jar on ``server`` (no redirects followed)."""
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as client:
        yield client


def post_form(
    client: httpx.Client, path: str, data: dict[str, str], *, page: str | None = None
) -> httpx.Response:
    """GET ``page`` (default ``path``) for its token, then POST ``data`` with it."""
    token = csrf_in(client.get(page or path).text)
    return client.post(path, data={"csrf": token, **data})


def sign_in(
    client: httpx.Client, email: str, password: str = PASSWORD, **extra: str
) -> httpx.Response:
    """Post the sign-in form."""
    return post_form(client, "/login", {"email": email, "password": password, **extra})


def login_cookie(response: httpx.Response, name: str = "authgate_login") -> dict[str, Any]:
    """The attributes of the ``name`` cookie the response sets (lower-cased keys)."""
    for header in response.headers.get_list("set-cookie"):
        first, *attrs = [part.strip() for part in header.split(";")]
        key, _, value = first.partition("=")
        if key == name:
            out: dict[str, Any] = {"value": value}
            for attr in attrs:
                k, _, v = attr.partition("=")
                out[k.lower()] = v or True
            return out
    raise AssertionError(f"no {name} cookie set: {response.headers.get_list('set-cookie')}")
