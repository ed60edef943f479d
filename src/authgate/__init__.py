"""authgate: JWT authentication done right.

The server is built by :func:`authgate.server.create_app` from :class:`authgate.settings.Settings`
(its services by :func:`authgate.wiring.open_services`); a resource server protects its
routes with :class:`authgate.guard.Guard`. This package re-exports the light core that both
share: the error root, the clocks and the strict token codec.
"""

from authgate.clock import Clock, FixedClock, SystemClock
from authgate.errors import AuthgateError, InvalidToken
from authgate.jose import ClaimsPolicy, Key, KeySet, decode, encode

__version__ = "0.1.0"

__all__ = [
    "AuthgateError",
    "ClaimsPolicy",
    "Clock",
    "FixedClock",
    "InvalidToken",
    "Key",
    "KeySet",
    "SystemClock",
    "decode",
    "encode",
]
