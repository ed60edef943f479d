"""Where the guard may send a request: the one rule for every URL it fetches or sends its
client credentials to.

A URL is usable when its scheme is https (plain http only on a loopback host, or anywhere
with ``allow_insecure_http``), it carries no userinfo, and its origin is the issuer's or
one the user allowlisted explicitly (``allowed_origins``). URLs are parsed with httpx's own
parser, so that the origin checked is the origin the request goes to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass

import httpx

from authgate.errors import ConfigurationError

Origin = tuple[str, str, int]  # scheme, host, port
_DEFAULT_PORTS = {"http": 80, "https": 443}
REFUSED = "endpoint_not_allowed"


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``*.localhost`` and loopback addresses."""
    host = host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse(url: str | httpx.URL) -> httpx.URL | None:
    if isinstance(url, httpx.URL):
        return url
    if not isinstance(url, str):
        return None
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None


def show(origin: Origin) -> str:
    """An origin as text (``https://host:443``)."""
    scheme, host, port = origin
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def origin_of(url: str | httpx.URL) -> Origin | None:
    """``(scheme, host, port)`` of an http(s) URL with a host, the port made explicit;
    None for anything else."""
    parsed = _parse(url)
    if parsed is None or parsed.scheme not in _DEFAULT_PORTS or not parsed.host:
        return None
    return parsed.scheme, parsed.host, parsed.port or _DEFAULT_PORTS[parsed.scheme]


def _scheme_refusal(origin: Origin, *, allow_insecure_http: bool) -> str | None:
    if origin[0] == "http" and not allow_insecure_http and not is_loopback(origin[1]):
        return (
            "is plain http: keys fetched over it can be forged in transit, and credentials "
            "sent over it read (use https, or allow_insecure_http=True for a trusted network)"
        )
    return None


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    """The origins the guard may talk to: the issuer's and the allowlisted ones."""

    origins: frozenset[Origin]
    allow_insecure_http: bool = False

    @classmethod
    def for_issuer(
        cls, issuer: str, *, allowed_origins: Collection[str] = (), allow_insecure_http: bool
    ) -> EndpointPolicy:
        """The policy of a guard on ``issuer``. ConfigurationError for an issuer that is not
        a usable http(s) URL, or an ``allowed_origins`` entry that is not an origin
        (``scheme://host[:port]``, nothing more)."""
        origin = origin_of(issuer)
        if origin is None:
            raise ConfigurationError(f"issuer {issuer!r} is not an http(s) URL", condition=REFUSED)
        origins = {origin}
        if isinstance(allowed_origins, str):
            raise ConfigurationError("allowed_origins must be a collection of origins")
        for entry in allowed_origins:
            parsed = _parse(entry) if isinstance(entry, str) else None
            allowed = None if parsed is None else origin_of(parsed)
            if (
                parsed is None
                or allowed is None
                or parsed.userinfo
                or parsed.raw_path != b"/"
                or "#" in str(entry)
            ):
                raise ConfigurationError(
                    f"allowed_origins: {entry!r} is not an origin (scheme://host[:port])",
                    condition=REFUSED,
                )
            origins.add(allowed)
        policy = cls(frozenset(origins), allow_insecure_http)
        for allowed in origins:
            why = _scheme_refusal(allowed, allow_insecure_http=allow_insecure_http)
            if why is not None:
                raise ConfigurationError(f"{show(allowed)} {why}", condition=REFUSED)
        return policy

    def refusal(self, url: str | httpx.URL) -> str | None:
        """Why the guard may not send a request to ``url``, or None when it may."""
        parsed = _parse(url)
        origin = origin_of(parsed) if parsed is not None else None
        if parsed is None or origin is None:
            return "is not an http(s) URL with a host"
        if parsed.userinfo:
            return "carries userinfo (credentials in a URL are never used)"
        why = _scheme_refusal(origin, allow_insecure_http=self.allow_insecure_http)
        if why is not None:
            return why
        if origin not in self.origins:
            return (
                f"is on {show(origin)}, not the issuer's origin (add it to allowed_origins "
                "to trust it explicitly)"
            )
        return None

    def check(self, url: object, *, what: str) -> str:
        """``url`` if the guard may use it for ``what``; ConfigurationError (context
        ``condition='endpoint_not_allowed'``) otherwise."""
        if not isinstance(url, str):
            raise ConfigurationError(f"{what} is not a URL", condition=REFUSED, endpoint=what)
        why = self.refusal(url)
        if why is not None:
            origin = origin_of(url)
            raise ConfigurationError(
                f"{what} {why}",
                condition=REFUSED,
                endpoint=what,
                origin=None if origin is None else show(origin),
            )
        return url


__all__ = ["REFUSED", "EndpointPolicy", "Origin", "is_loopback", "origin_of", "show"]
