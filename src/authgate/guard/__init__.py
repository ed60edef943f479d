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
``django`` extra). Flask and Django are imported only when their adapter is used.
"""

from authgate.guard.feed import Event, FeedFollower, RevocationState
from authgate.guard.guard import CacheInfo, Guard
from authgate.guard.jwks import JWKSCache
from authgate.guard.principal import Challenge, Principal, Requirement, challenge

__all__ = [
    "CacheInfo",
    "Challenge",
    "Event",
    "FeedFollower",
    "Guard",
    "JWKSCache",
    "Principal",
    "Requirement",
    "RevocationState",
    "challenge",
]
