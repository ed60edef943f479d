"""authgate.guard: protect a Python API (the resource server) with authgate access tokens.

```python
from authgate.guard import Guard, Principal

guard = Guard(issuer="https://auth.example.com", audience="api",
              client_id="...", client_secret="...")
principal = await guard.verify(token)        # raises authgate.errors.InvalidToken
```

Adapters: ``guard.asgi_middleware`` (pure ASGI, Starlette-compatible),
``guard.require(...)`` (FastAPI), ``guard.starlette_required(...)``,
``guard.flask_required(...)`` / ``authgate.guard.flask.FlaskGuard`` (the ``flask`` extra)
and ``guard.django_required(...)`` / ``authgate.guard.django.GuardMiddleware`` (the
``django`` extra). Flask and Django are imported only when their adapter is used. An
adapter of another framework calls ``guard.verify_cached(token)`` (then ``guard.verify``
when it answers None), reads the token with :func:`parse_bearer` and answers a refusal
with :func:`challenge`.
"""

from authgate.bearer import parse_bearer
from authgate.guard.cache import CacheInfo
from authgate.guard.feed import Event, FeedFollower, RevocationState
from authgate.guard.guard import Guard
from authgate.guard.jwks import JWKSCache
from authgate.guard.options import GuardOptions
from authgate.guard.principal import Principal, Requirement
from authgate.guard.responses import Challenge, challenge

__all__ = [
    "CacheInfo",
    "Challenge",
    "Event",
    "FeedFollower",
    "Guard",
    "GuardOptions",
    "JWKSCache",
    "Principal",
    "Requirement",
    "RevocationState",
    "challenge",
    "parse_bearer",
]
