"""Pure-ASGI gates every request passes before routing: the one strict parse of every JSON
body.

It answers through ``problems.error_response``, so a refusal has the same status, code
and body shape (problem+json, or the RFC 6749 body under /oauth2) as one raised in a route.
"""

from __future__ import annotations

import email.message

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.errors import AuthgateError, InvalidJSON
from authgate.jsonbody import loads_body, media_type
from authgate.server.problems import error_response


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: AuthgateError) -> None:
    response = error_response(Request(scope), exc)
    await response(scope, receive, send)


def _is_json(content_type: str) -> bool:
    """JSON by our reading or by FastAPI's (``application/json``, ``application/*+json``):
    whatever either would parse as JSON is checked here first."""
    simple = media_type(content_type)
    if simple == "application/json" or (
        simple.startswith("application/") and simple.endswith("+json")
    ):
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class StrictJSONMiddleware:
    """Reads every JSON request body whole and parses it with :func:`loads_body` before the
    app sees it: a body that is not one strict JSON object within the depth cap gets 400
    ``invalid_json`` and never reaches a route. The body is then replayed unchanged.

    It sits inside the body-size cap, so the body it buffers is bounded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(
            name == b"content-type" and _is_json(value.decode("latin-1"))
            for name, value in scope["headers"]
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left, or the size cap already answered 413
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            try:
                loads_body(body)
            except InvalidJSON as exc:
                await _refuse(scope, receive, send, exc)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
