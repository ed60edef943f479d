"""Settings: from ``AUTHGATE_*`` environment variables and ``authgate.toml``; the environment wins.

Every secret also has a ``_FILE`` form. Weak secrets are refused here, at start-up.
Nothing is read at import time: call :meth:`Settings.load`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from authgate.errors import ConfigurationError
from authgate.jose import b64decode
from authgate.jose.keys import ALGORITHMS
from authgate.passwords import Argon2Params
from authgate.service.limits import ThrottlePolicy
from authgate.service.links import LinkPolicy
from authgate.service.tokens import TokenPolicy

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", re.IGNORECASE)
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
DEFAULT_CONFIG = "authgate.toml"
DEFAULT_DATABASE_URL = "sqlite:///./authgate.db"
MASTER_KEY_BYTES = 32


class Secret:
    """A string that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def parse_duration(value: str | int | float, *, name: str = "duration") -> float:
    """``600``, ``90s``, ``10m``, ``1h``, ``14d`` -> seconds."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a duration", setting=name)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value))
        if match is None:
            raise ConfigurationError(
                f"{name} must be whole seconds or a number with a unit (10m, 14d, 90s, 1h)",
                setting=name,
            )
        unit = match.group(2).lower() if match.group(2) else None
        seconds = float(match.group(1)) * _UNITS[unit]
    if seconds < 0:
        raise ConfigurationError(f"{name} must not be negative", setting=name)
    return seconds


def secret_weakness(secret: bytes) -> str | None:
    """Why a shared secret is weak (too short, too uniform or a common password), or None."""
    if len(secret) < 32:
        return "it is shorter than 32 bytes"
    if len(set(secret)) < 12:
        return "it repeats too few distinct bytes"
    from authgate.passwords import common_passwords

    try:
        text = secret.decode("utf-8").strip().casefold()
    except UnicodeDecodeError:
        return None
    if text in common_passwords():
        return "it is a common password"
    return None


def decode_master_key(text: str) -> bytes:
    """A master key is 32 random bytes, written as base64url (43 chars) or hex (64 chars)."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else b64decode(text)
    except Exception as exc:
        raise ConfigurationError("the master key is not base64url or hex") from exc
    if len(raw) != MASTER_KEY_BYTES:
        raise ConfigurationError(f"the master key must be {MASTER_KEY_BYTES} bytes")
    if len(set(raw)) < 12:
        raise ConfigurationError("the master key is weak: it is not random")
    return raw


def _parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false", setting=name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every setting of the server. Build with :meth:`load` or :meth:`from_env`."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    issuer: str = "http://127.0.0.1:8000"
    audience: str = "authgate"
    master_key: Secret | None = None
    master_key_file: Path = Path("master.key")
    master_key_file_explicit: bool = False
    signing_alg: str = "ES256"
    hs256_secret: Secret | None = None
    id_token_algs: tuple[str, ...] = ("RS256",)  # OpenID Connect ID tokens (asymmetric only)
    access_ttl: float = 600.0
    refresh_idle_ttl: float = 14 * 86400.0
    refresh_max_ttl: float = 90 * 86400.0
    refresh_grace: float = 10.0
    key_rotation: float = 30 * 86400.0
    registration: Literal["open", "closed"] = "open"
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    leeway: float = 0.0
    env: Literal["development", "production"] = "development"
    log_format: Literal["json", "console"] | None = None  # None: console on a TTY, else JSON
    db_pool_size: int = 10
    hash_concurrency: int = 2
    hash_queue: int = 64
    argon2_memory_kib: int = Argon2Params().memory_cost
    argon2_time_cost: int = Argon2Params().time_cost
    argon2_parallelism: int = Argon2Params().parallelism
    throttle_window: float = 900.0
    throttle_delay_after: int = 5
    throttle_lock_after: int = 10
    throttle_ip_limit: int = 100
    throttle_base_delay: float = 0.25
    max_body_bytes: int = 65536
    max_in_flight: int = 128
    config_dir: Path = field(default_factory=Path.cwd)
    # HTTP runtime
    header_timeout: float = 10.0  # from connect (or the last response) to complete headers
    body_timeout: float = 30.0  # from complete headers to the end of the body
    # Throttles and input policy
    throttle_client_limit: int = 10  # failed client authentications per client id
    throttle_client_ip_limit: int = 100  # failed client authentications per IP
    # Exposure
    docs: bool | None = None  # /docs and /openapi.json; None: on in development only
    metrics_token: Secret | None = None  # a Bearer token for /metrics
    allowed_hosts: tuple[str, ...] = ()  # empty: the issuer's host and loopback
    # Mail
    public_url: str | None = None  # the base of links in mails; None: the issuer
    email: Literal["console", "smtp", "webhook"] = "console"
    email_from: str | None = None  # None: no-reply@ the public URL's host
    smtp_url: Secret | None = None  # it may hold a password
    smtp_ca_file: Path | None = None
    email_webhook_url: str | None = None
    email_webhook_secret: Secret | None = None
    email_templates: Path | None = None  # a folder whose templates replace the packaged ones
    # Account lifecycle
    verify_ttl: float = 86400.0
    reset_ttl: float = 1800.0
    email_change_ttl: float = 3600.0
    require_verified_email: bool = False
    enumeration_safe_registration: bool = False  # 202 for a new and a taken address alike
    mail_limit: int = 5  # mail-sending requests per address (or account) per hour
    mail_ip_limit: int = 50  # mail-sending requests per IP per hour
    # Passkeys (WebAuthn)
    webauthn_rp_id: str | None = None  # None: the public URL's host
    webauthn_origins: tuple[str, ...] = ()  # empty: the public URL's origin
    # Hosted pages
    web_theme_dir: Path | None = None  # templates and theme.css over the packaged ones
    web_login_idle_ttl: float = 43200.0  # the login-session cookie's idle lifetime (12 h)
    web_login_max_ttl: float = 604800.0  # and its absolute lifetime (7 days)
    # Browser sessions for first-party single-page apps (README: "Browser sessions")
    cookie_mode: bool = False  # /auth/login, refresh, logout may deliver tokens in cookies
    access_cookie: bool = False  # in cookie mode, the access token too (for a guard's cookie)

    def token_policy(self) -> TokenPolicy:
        """Lifetimes and identity of the tokens the server issues."""
        # Each field of TokenPolicy is the setting of the same name.
        return TokenPolicy(**{f.name: getattr(self, f.name) for f in fields(TokenPolicy)})

    def login_throttle_policy(self) -> ThrottlePolicy:
        """The throttle of password checks (per account and per IP)."""
        names = ("window", "delay_after", "lock_after", "ip_limit", "base_delay")
        return ThrottlePolicy(**{name: getattr(self, f"throttle_{name}") for name in names})

    def client_throttle_policy(self) -> ThrottlePolicy:
        """The throttle of client authentication (per client id and per IP)."""
        return ThrottlePolicy(
            window=self.throttle_window,
            # No growing delay: 429 once the failures pass the limit (the next attempt is the
            # first over it).
            delay_after=self.throttle_client_limit + 1,
            lock_after=self.throttle_client_limit + 1,
            ip_limit=self.throttle_client_ip_limit,
            base_delay=self.throttle_base_delay,
        )

    def link_policy(self) -> LinkPolicy:
        """Lifetimes of mailed links and the mail limits."""
        return LinkPolicy(
            verify_ttl=self.verify_ttl,
            reset_ttl=self.reset_ttl,
            email_change_ttl=self.email_change_ttl,
            send_limit=self.mail_limit,
            send_ip_limit=self.mail_ip_limit,
        )

    def argon2_params(self) -> Argon2Params:
        """The argon2id parameters of new password hashes."""
        return Argon2Params(
            memory_cost=self.argon2_memory_kib,
            time_cost=self.argon2_time_cost,
            parallelism=self.argon2_parallelism,
        )

    @property
    def is_production(self) -> bool:
        """True in production mode."""
        return self.env == "production"

    @property
    def docs_enabled(self) -> bool:
        """Whether /docs and /openapi.json are served: AUTHGATE_DOCS, else development only."""
        return self.docs if self.docs is not None else not self.is_production

    @property
    def host_names(self) -> frozenset[str]:
        """The Host names the server answers: AUTHGATE_ALLOWED_HOSTS, else the public host
        names (the issuer's, and AUTHGATE_PUBLIC_URL's where set) and loopback."""
        if self.allowed_hosts:
            return frozenset(self.allowed_hosts)
        names = {*_LOOPBACK_HOSTS, _url_host(self.issuer)}
        public_url = getattr(self, "public_url", None)
        if isinstance(public_url, str) and public_url:
            names.add(_url_host(public_url))
        return frozenset(names)

    @property
    def public_base_url(self) -> str:
        """The base of links in mails and pages: AUTHGATE_PUBLIC_URL, else the issuer."""
        return self.public_url or self.issuer

    @property
    def passkey_rp_id(self) -> str:
        """The WebAuthn RP ID: AUTHGATE_WEBAUTHN_RP_ID, else the public URL's host."""
        return self.webauthn_rp_id or _url_host(self.public_base_url)

    @property
    def passkey_origins(self) -> tuple[str, ...]:
        """The origins a WebAuthn ceremony may come from: AUTHGATE_WEBAUTHN_ORIGINS, else the
        public URL's origin."""
        if self.webauthn_origins:
            return self.webauthn_origins
        parts = urlsplit(self.public_base_url)
        return (f"{parts.scheme}://{parts.netloc}".lower(),)

    @property
    def mail_sender(self) -> str:
        """The From address: AUTHGATE_EMAIL_FROM, else no-reply@ the public host."""
        return self.email_from or f"no-reply@{_url_host(self.public_base_url) or 'localhost'}"

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        config: str | Path | None = None,
        cwd: Path | None = None,
    ) -> Settings:
        """Read ``config`` (or ./authgate.toml if present), then the environment over it."""
        environ = os.environ if environ is None else environ
        base = cwd or Path.cwd()
        values: dict[str, Any] = {}
        config_dir = base
        path = Path(config) if config is not None else base / DEFAULT_CONFIG
        if not path.is_absolute():
            path = base / path
        if config is not None or path.exists():
            try:
                with path.open("rb") as fh:
                    values = dict(tomllib.load(fh))
            except FileNotFoundError as exc:
                raise ConfigurationError(f"config file {path} does not exist") from exc
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigurationError(f"config file {path} cannot be read: {exc}") from exc
            config_dir = path.parent.resolve()
        return cls.from_env(environ, file_values=values, config_dir=config_dir)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        file_values: Mapping[str, Any] | None = None,
        config_dir: Path | None = None,
    ) -> Settings:
        """Build settings from ``AUTHGATE_*`` variables over ``file_values`` (toml keys)."""
        config_dir = (config_dir or Path.cwd()).resolve()
        known = {f.name for f in fields(cls)} - {"config_dir", "master_key_file_explicit"}
        raw: dict[str, Any] = {}
        for key, value in (file_values or {}).items():
            if key not in known and not (key.endswith("_file") and key[:-5] in known):
                raise ConfigurationError(f"unknown setting {key!r} in the config file", setting=key)
            raw[key] = value
        for name, value in environ.items():
            if name.startswith("AUTHGATE_"):
                key = name[len("AUTHGATE_") :].lower()
                if key in known or (key.endswith("_file") and key[:-5] in known):
                    raw[key] = value
        return cls._build(raw, config_dir)

    @classmethod
    def _build(cls, raw: dict[str, Any], config_dir: Path) -> Settings:
        def path_of(value: Any) -> Path:
            p = Path(str(value)).expanduser()
            return p if p.is_absolute() else config_dir / p

        def read_secret(name: str) -> Secret | None:
            if raw.get(name) not in (None, ""):
                return Secret(str(raw[name]))
            file_value = raw.get(f"{name}_file")
            if file_value in (None, ""):
                return None
            try:
                return Secret(path_of(file_value).read_text("utf-8").strip())
            except OSError as exc:
                raise ConfigurationError(f"cannot read {name}_file: {exc.strerror}") from exc

        kw: dict[str, Any] = {"config_dir": config_dir}
        for name in ("redis_url", "issuer", "audience"):
            if raw.get(name) not in (None, ""):
                kw[name] = str(raw[name])
        database_url = read_secret("database_url")  # it may hold a password: a _FILE form
        if database_url is not None:
            kw["database_url"] = _resolve_sqlite(database_url.reveal(), config_dir)
        else:
            kw["database_url"] = _resolve_sqlite(DEFAULT_DATABASE_URL, config_dir)
        kw["master_key"] = read_secret("master_key") if raw.get("master_key") else None
        if raw.get("master_key_file") not in (None, ""):
            kw["master_key_file"] = path_of(raw["master_key_file"])
            kw["master_key_file_explicit"] = True
        else:
            kw["master_key_file"] = config_dir / "master.key"
        kw["hs256_secret"] = read_secret("hs256_secret")
        if raw.get("redis_url_file"):
            secret = read_secret("redis_url")
            kw["redis_url"] = secret.reveal() if secret else None
        for name in (
            "access_ttl",
            "refresh_idle_ttl",
            "refresh_max_ttl",
            "refresh_grace",
            "key_rotation",
            "leeway",
            "throttle_window",
            "throttle_base_delay",
            "header_timeout",
            "body_timeout",
            "verify_ttl",
            "reset_ttl",
            "email_change_ttl",
            "web_login_idle_ttl",
            "web_login_max_ttl",
        ):
            if name in raw:
                kw[name] = parse_duration(raw[name], name=f"AUTHGATE_{name.upper()}")
        for name in (
            "db_pool_size",
            "hash_concurrency",
            "hash_queue",
            "argon2_memory_kib",
            "argon2_time_cost",
            "argon2_parallelism",
            "throttle_delay_after",
            "throttle_lock_after",
            "throttle_ip_limit",
            "max_body_bytes",
            "max_in_flight",
            "throttle_client_limit",
            "throttle_client_ip_limit",
            "mail_limit",
            "mail_ip_limit",
        ):
            if name in raw:
                try:
                    kw[name] = int(raw[name])
                except (TypeError, ValueError) as exc:
                    raise ConfigurationError(f"AUTHGATE_{name.upper()} must be an integer") from exc
                if kw[name] < 1:
                    raise ConfigurationError(f"AUTHGATE_{name.upper()} must be at least 1")
        if "signing_alg" in raw:
            kw["signing_alg"] = str(raw["signing_alg"])
        if raw.get("id_token_algs") not in (None, ""):
            kw["id_token_algs"] = tuple(dict.fromkeys(_split_list(raw["id_token_algs"])))
        for name, allowed in (
            ("registration", ("open", "closed")),
            ("env", ("development", "production")),
            ("log_format", ("json", "console")),
        ):
            if name in raw:
                value = str(raw[name]).strip().lower()
                if value not in allowed:
                    raise ConfigurationError(
                        f"AUTHGATE_{name.upper()} must be one of {', '.join(allowed)}"
                    )
                kw[name] = value
        if "cors_origins" in raw:
            kw["cors_origins"] = _split_list(raw["cors_origins"])
            for origin in kw["cors_origins"]:
                if origin == "*" or not re.fullmatch(r"https?://[^/\s]+", origin):
                    raise ConfigurationError(
                        f"CORS origin {origin!r} must be scheme://host[:port]; '*' is refused"
                    )
        if "trusted_proxies" in raw:
            try:
                kw["trusted_proxies"] = tuple(
                    ipaddress.ip_network(item, strict=False)
                    for item in _split_list(raw["trusted_proxies"])
                )
            except ValueError as exc:
                raise ConfigurationError(f"AUTHGATE_TRUSTED_PROXIES: {exc}") from exc
        # Exposure
        if raw.get("docs") not in (None, ""):
            kw["docs"] = _parse_bool(raw["docs"], "AUTHGATE_DOCS")
        kw["metrics_token"] = read_secret("metrics_token")
        if "allowed_hosts" in raw:
            kw["allowed_hosts"] = tuple(h.lower() for h in _split_list(raw["allowed_hosts"]))
        # Mail
        for name in ("public_url", "email_from", "email_webhook_url"):
            if raw.get(name) not in (None, ""):
                kw[name] = str(raw[name]).strip()
        if raw.get("email") not in (None, ""):
            kw["email"] = str(raw["email"]).strip().lower()
            if kw["email"] not in ("console", "smtp", "webhook"):
                raise ConfigurationError("AUTHGATE_EMAIL must be one of console, smtp, webhook")
        kw["smtp_url"] = read_secret("smtp_url")
        kw["email_webhook_secret"] = read_secret("email_webhook_secret")
        for name in ("smtp_ca_file", "email_templates", "web_theme_dir"):
            if raw.get(name) not in (None, ""):
                kw[name] = path_of(raw[name])
        for name in (
            "require_verified_email",
            "enumeration_safe_registration",
            "cookie_mode",
            "access_cookie",
        ):
            if raw.get(name) not in (None, ""):
                kw[name] = _parse_bool(raw[name], f"AUTHGATE_{name.upper()}")
        # Passkeys
        if raw.get("webauthn_rp_id") not in (None, ""):
            kw["webauthn_rp_id"] = str(raw["webauthn_rp_id"]).strip()
        if "webauthn_origins" in raw:
            kw["webauthn_origins"] = _split_list(raw["webauthn_origins"])
        settings = cls(**kw)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse inconsistent or weak settings; stricter in production."""
        if self.signing_alg not in ALGORITHMS:
            raise ConfigurationError(f"AUTHGATE_SIGNING_ALG {self.signing_alg!r} is not supported")
        if not self.id_token_algs:
            raise ConfigurationError("AUTHGATE_ID_TOKEN_ALGS names no algorithm")
        for alg in self.id_token_algs:
            if alg not in ALGORITHMS or alg.startswith("HS"):
                raise ConfigurationError(
                    f"AUTHGATE_ID_TOKEN_ALGS: {alg!r} is not a supported asymmetric algorithm"
                )
        if not re.fullmatch(r"https?://[^\s]+", self.issuer) or self.issuer.endswith("/"):
            raise ConfigurationError("AUTHGATE_ISSUER must be an http(s) URL without a trailing /")
        if not 0 <= self.leeway <= 300:
            raise ConfigurationError("AUTHGATE_LEEWAY must be between 0 and 300 seconds")
        if self.access_ttl < 1 or self.access_ttl > 86400:
            raise ConfigurationError("AUTHGATE_ACCESS_TTL must be between 1 s and 1 day")
        for name, seconds in (("header", self.header_timeout), ("body", self.body_timeout)):
            if not 0 < seconds <= 3600:
                raise ConfigurationError(
                    f"AUTHGATE_{name.upper()}_TIMEOUT must be over 0 s and at most 1 h"
                )
        if self.refresh_idle_ttl > self.refresh_max_ttl:
            raise ConfigurationError("AUTHGATE_REFRESH_IDLE_TTL is over AUTHGATE_REFRESH_MAX_TTL")
        if self.key_rotation < 2 * self.access_ttl:
            raise ConfigurationError("AUTHGATE_KEY_ROTATION must be at least twice the access TTL")
        if self.master_key is not None:
            decode_master_key(self.master_key.reveal())
        if self.hs256_secret is not None:
            why = secret_weakness(self.hs256_secret.reveal().encode("utf-8"))
            if why is not None:
                raise ConfigurationError(f"AUTHGATE_HS256_SECRET is weak: {why}")
            if not self.signing_alg.startswith("HS"):
                raise ConfigurationError("AUTHGATE_HS256_SECRET needs AUTHGATE_SIGNING_ALG=HS256")
        if self.metrics_token is not None:
            why = secret_weakness(self.metrics_token.reveal().encode("utf-8"))
            if why is not None:
                raise ConfigurationError(f"AUTHGATE_METRICS_TOKEN is weak: {why}")
        for host in self.allowed_hosts:
            if not _HOST_NAME.fullmatch(host) and not _is_ip(host):
                raise ConfigurationError(
                    f"AUTHGATE_ALLOWED_HOSTS: {host!r} is not a host name or an IP address"
                )
        self._validate_mail()
        self._validate_webauthn()
        for name, seconds in (
            ("verify_ttl", self.verify_ttl),
            ("reset_ttl", self.reset_ttl),
            ("email_change_ttl", self.email_change_ttl),
        ):
            if not 60 <= seconds <= 30 * 86400:
                raise ConfigurationError(
                    f"AUTHGATE_{name.upper()} must be between 1 minute and 30 days"
                )
        if not 60 <= self.web_login_idle_ttl <= self.web_login_max_ttl <= 365 * 86400:
            raise ConfigurationError(
                "AUTHGATE_WEB_LOGIN_IDLE_TTL must be at least 1 minute and at most "
                "AUTHGATE_WEB_LOGIN_MAX_TTL, itself at most 365 days"
            )
        self._validate_cookie_mode()
        if self.enumeration_safe_registration and not self.require_verified_email:
            raise ConfigurationError(
                "AUTHGATE_ENUMERATION_SAFE_REGISTRATION needs AUTHGATE_REQUIRE_VERIFIED_EMAIL=true"
            )
        if self.is_production:
            if not self.issuer.startswith("https://"):
                raise ConfigurationError("production refuses a plain-http AUTHGATE_ISSUER")
            if self.master_key is None and not self.master_key_file_explicit:
                raise ConfigurationError(
                    "production needs AUTHGATE_MASTER_KEY or an explicit AUTHGATE_MASTER_KEY_FILE"
                )

    @property
    def cookies_secure(self) -> bool:
        """True when the public URL is https: the cookie mode's cookies are Secure."""
        return self.public_base_url.startswith("https://")

    def _validate_cookie_mode(self) -> None:
        if self.access_cookie and not self.cookie_mode:
            raise ConfigurationError("AUTHGATE_ACCESS_COOKIE needs AUTHGATE_COOKIE_MODE=on")
        # A refresh token in a cookie that is not Secure may cross plain http: only to
        # loopback, in development.
        if (
            self.cookie_mode
            and not self.cookies_secure
            and (self.is_production or _url_host(self.public_base_url) not in _LOOPBACK_HOSTS)
        ):
            raise ConfigurationError(
                "AUTHGATE_COOKIE_MODE needs an https public URL (plain http only on loopback, "
                "outside production)"
            )

    def _validate_mail(self) -> None:
        from authgate.service.mail import WEBHOOK_SECRET_PREFIX, SmtpTarget, webhook_key

        if self.public_url is not None and (
            not re.fullmatch(r"https?://[^\s]+", self.public_url) or self.public_url.endswith("/")
        ):
            raise ConfigurationError(
                "AUTHGATE_PUBLIC_URL must be an http(s) URL without a trailing /"
            )
        if self.is_production and not self.public_base_url.startswith("https://"):
            raise ConfigurationError("production refuses a plain-http AUTHGATE_PUBLIC_URL")
        if self.email_from is not None and not re.fullmatch(r"[^\r\n]*@[^\r\n]+", self.email_from):
            raise ConfigurationError("AUTHGATE_EMAIL_FROM must be an email address")
        for name in ("smtp_ca_file", "email_templates", "web_theme_dir"):
            path = getattr(self, name)
            if path is not None and not path.exists():
                raise ConfigurationError(f"AUTHGATE_{name.upper()}: {path} does not exist")
        if self.smtp_url is not None:
            target = SmtpTarget.parse(self.smtp_url.reveal())
            if self.is_production and not target.encrypted and target.host not in _LOOPBACK_HOSTS:
                raise ConfigurationError(
                    "production refuses plain smtp:// to a host other than loopback: "
                    "use smtp+starttls:// or smtps://"
                )
        if self.email == "smtp" and self.smtp_url is None:
            raise ConfigurationError("AUTHGATE_EMAIL=smtp needs AUTHGATE_SMTP_URL")
        if self.email_webhook_url is not None and not re.fullmatch(
            r"https?://[^\s]+", self.email_webhook_url
        ):
            raise ConfigurationError("AUTHGATE_EMAIL_WEBHOOK_URL must be an http(s) URL")
        if self.email == "webhook" and (
            self.email_webhook_url is None or self.email_webhook_secret is None
        ):
            raise ConfigurationError(
                "AUTHGATE_EMAIL=webhook needs AUTHGATE_EMAIL_WEBHOOK_URL and "
                "AUTHGATE_EMAIL_WEBHOOK_SECRET"
            )
        if self.email_webhook_secret is not None:
            text = self.email_webhook_secret.reveal()
            key = webhook_key(text)
            if text.startswith(WEBHOOK_SECRET_PREFIX):
                # Standard Webhooks keys are 24 to 64 random bytes.
                why = "it is shorter than 24 bytes" if len(key) < 24 else None
                if why is None and len(set(key)) < 12:
                    why = "it repeats too few distinct bytes"
            else:
                why = secret_weakness(key)
            if why is not None and self.is_production:
                raise ConfigurationError(f"AUTHGATE_EMAIL_WEBHOOK_SECRET is weak: {why}")

    def _validate_webauthn(self) -> None:
        """An explicit RP ID is a lower-case domain name (browsers refuse an IP address);
        each origin is scheme://host[:port] whose host is the RP ID or under it, https in
        production (http only on loopback otherwise)."""
        rp_id = self.passkey_rp_id
        if self.webauthn_rp_id is not None and (
            not _HOST_NAME.fullmatch(self.webauthn_rp_id) or _is_ip(self.webauthn_rp_id)
        ):
            raise ConfigurationError(
                "AUTHGATE_WEBAUTHN_RP_ID must be a lower-case domain name (no scheme, port "
                "or IP address)",
                setting="webauthn_rp_id",
            )
        for origin in self.webauthn_origins:
            if not re.fullmatch(r"https?://[^/\s?#@]+", origin) or origin != origin.lower():
                raise ConfigurationError(
                    f"AUTHGATE_WEBAUTHN_ORIGINS: {origin!r} must be scheme://host[:port], "
                    "lower case",
                    setting="webauthn_origins",
                )
            parts = urlsplit(origin)
            try:
                host, _ = (parts.hostname or ""), parts.port
            except ValueError as exc:
                raise ConfigurationError(
                    f"AUTHGATE_WEBAUTHN_ORIGINS: {origin!r} has a bad port",
                    setting="webauthn_origins",
                ) from exc
            if parts.scheme != "https" and (self.is_production or host not in _LOOPBACK_HOSTS):
                raise ConfigurationError(
                    f"AUTHGATE_WEBAUTHN_ORIGINS: {origin!r} must be https (plain http only "
                    "for loopback, outside production)",
                    setting="webauthn_origins",
                )
        # Derived from one URL, the default RP ID and origin always agree.
        if self.webauthn_rp_id is not None or self.webauthn_origins:
            for origin in self.passkey_origins:
                host = _url_host(origin)
                if host != rp_id and not host.endswith("." + rp_id):
                    raise ConfigurationError(
                        f"the WebAuthn origin {origin!r} is not on the RP ID {rp_id!r} or "
                        "under it: set AUTHGATE_WEBAUTHN_RP_ID and AUTHGATE_WEBAUTHN_ORIGINS",
                        setting="webauthn_origins",
                    )

    def describe(self) -> dict[str, Any]:
        """Every setting, with secrets masked: safe to log."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = "**********"
            elif f.name in ("database_url", "redis_url") and isinstance(value, str):
                value = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", value)
            elif isinstance(value, Path | tuple):
                value = str(value) if isinstance(value, Path) else [str(v) for v in value]
            out[f.name] = value
        return out


_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME: Final = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _url_host(url: str) -> str:
    """The lower-case host name of an http(s) URL (an IPv6 literal without brackets)."""
    return (urlsplit(url).hostname or "").lower()


def _split_list(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _resolve_sqlite(url: str, config_dir: Path) -> str:
    """Make a relative SQLite path absolute against the config folder."""
    for prefix in ("sqlite:///", "sqlite+aiosqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            if rest.startswith("/") or rest.startswith(":memory:"):
                return url
            return prefix + str((config_dir / rest).resolve())
    return url


__all__ = ["Secret", "Settings", "decode_master_key", "parse_duration", "secret_weakness"]


__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_DATABASE_URL",
    "MASTER_KEY_BYTES",
    "Secret",
    "Settings",
    "decode_master_key",
    "parse_duration",
    "secret_weakness",
]
