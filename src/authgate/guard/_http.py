"""JSON over HTTP for the guard: size-capped bodies, and failures sorted into transient
(retry later) and permanent (a configuration to fix). Redirects are never followed: a 30x
is a permanent failure, so that no request (and no client secret) goes where it points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from authgate.errors import MalformedToken
from authgate.jose import loads_object

MAX_BODY = 4 * 1024 * 1024


class FetchError(Exception):
    """A request failed. ``permanent`` is True for answers that retrying will not change
    (a 4xx other than 408/429, a redirect, a refused endpoint, or an issuer mismatch);
    ``condition`` names a refusal by the guard itself (``redirect_refused``,
    ``endpoint_not_allowed``)."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status: int | None = None,
        condition: str | None = None,
    ):
        super().__init__(message)
        self.permanent = permanent
        self.status = status
        self.condition = condition


@dataclass(frozen=True, slots=True)
class JsonAnswer:
    """A 200 answer: its JSON object and headers."""

    data: dict[str, Any]
    headers: httpx.Headers


async def get_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    params: dict[str, Any] | None = None,
    auth: httpx.Auth | None = None,
    timeout: float | None = None,
    max_bytes: int = MAX_BODY,
) -> JsonAnswer:
    """GET ``url`` and parse a JSON object body of at most ``max_bytes``; FetchError otherwise."""
    kwargs: dict[str, Any] = {"params": params, "headers": {"Accept": "application/json"}}
    if auth is not None:
        kwargs["auth"] = auth
    if timeout is not None:
        kwargs["timeout"] = httpx.Timeout(timeout, connect=min(timeout, 10.0))
    try:
        async with client.stream("GET", url, **kwargs) as response:
            if response.is_redirect:
                location = response.headers.get("location", "")[:200]
                raise FetchError(
                    f"GET {url} answered {response.status_code}, a redirect to {location!r}: "
                    "the guard never follows redirects (configure the final URL)",
                    permanent=True,
                    status=response.status_code,
                    condition="redirect_refused",
                )
            if response.status_code != 200:
                status = response.status_code
                permanent = 400 <= status < 500 and status not in (408, 429)
                raise FetchError(f"GET {url} answered {status}", permanent=permanent, status=status)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"GET {url}: the body is over {max_bytes} bytes")
                chunks.append(chunk)
            headers = response.headers
    except httpx.HTTPError as exc:
        raise FetchError(f"GET {url} failed: {type(exc).__name__}") from exc
    try:
        # The strict parser: no duplicate members, UTF-8 only, an object at the top.
        data = loads_object(b"".join(chunks))
    except MalformedToken as exc:
        raise FetchError(f"GET {url}: the body is not a strict JSON object") from exc
    return JsonAnswer(data, headers)


__all__ = ["MAX_BODY", "FetchError", "JsonAnswer", "get_json"]
