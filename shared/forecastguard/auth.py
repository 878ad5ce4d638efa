"""Bearer-token authentication of the health endpoint: who may call it.

A request passes with `Authorization: Bearer <token>` when the token is either

- the shared `HEALTH_API_TOKEN` (compared in constant time), or
- a Google-signed ID token whose audience is `HEALTH_AUDIENCE` (the function's URL), whose
  `email` is verified (`email_verified`) and listed in `HEALTH_ALLOWED_CALLERS`. Anyone
  with a Google account can mint an ID token for any audience, so the audience alone says
  nothing about the caller: with the list empty every ID token is refused.

With neither configured every request is refused, unless `ALLOW_UNAUTHENTICATED=1` says
the endpoint is open on purpose.

Google's signing certificates are fetched once and kept for their `Cache-Control`
lifetime (the fetch times out after a few seconds); a token that is not even a well-formed
RS256 JWT is refused before any fetch.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from forecastguard.config import Settings
from forecastguard.logs import get_logger

log = get_logger(__name__)

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
MAX_TOKEN_CHARS = 4096  # Google ID tokens are about 1 KB
CERTS_FETCH_TIMEOUT_S = 4.0
CERTS_DEFAULT_TTL_S = 300.0
CERTS_MAX_TTL_S = 24 * 3600.0
CERTS_MIN_REFETCH_S = 30.0  # an unknown key id refetches at most this often
CERTS_RETRY_S = 5.0  # after a failed fetch with nothing cached, wait this long to retry
CLOCK_SKEW_S = 10
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}$")
_MAX_AGE = re.compile(r"max-age=(\d+)")


class TokenRejected(ValueError):
    """An ID token is not acceptable; the text says why (for the log, not the caller)."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def check_jwt_shape(token: str) -> dict[str, Any]:
    """The header of a token shaped like an RS256 JWT with a key id; `TokenRejected` if not.

    Cheap and local: runs before any certificate is fetched.
    """
    from google.auth import jwt

    if len(token) > MAX_TOKEN_CHARS or not _JWT_SHAPE.match(token):
        raise TokenRejected("not a JWT")
    try:
        header = jwt.decode_header(token)
    except Exception as exc:  # malformed base64 / JSON
        raise TokenRejected(f"unreadable JWT header: {type(exc).__name__}") from None
    if not isinstance(header, dict) or header.get("alg") != "RS256":
        raise TokenRejected("JWT is not RS256")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise TokenRejected("JWT has no key id")
    return header


def max_age(cache_control: str | None) -> float:
    """The lifetime a `Cache-Control` header gives, within [0, 24 h] (default 5 min)."""
    if not cache_control:
        return CERTS_DEFAULT_TTL_S
    if "no-store" in cache_control or "no-cache" in cache_control:
        return 0.0
    found = _MAX_AGE.search(cache_control)
    return min(float(found.group(1)), CERTS_MAX_TTL_S) if found else CERTS_DEFAULT_TTL_S


class CertCache:
    """Google's public certificates (key id -> PEM), fetched and kept per `Cache-Control`."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = CERTS_FETCH_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._certs: dict[str, str] = {}
        self._expires = 0.0
        self._fetched = float("-inf")
        self._session: Any = None
        self.fetches = 0

    def cert(self, kid: str) -> str:
        """The certificate of key `kid`, fetching when the cache is stale or lacks it."""
        with self._lock:
            now = self._clock()
            stale = now >= self._expires
            unknown = kid not in self._certs and now - self._fetched >= CERTS_MIN_REFETCH_S
            if stale or unknown:
                self._fetch(now)
            if kid not in self._certs:
                raise TokenRejected("unknown signing key")
            return self._certs[kid]

    def _fetch(self, now: float) -> None:
        import requests

        if self._session is None:
            self._session = requests.Session()
        self._fetched = now
        self.fetches += 1
        try:
            response = self._session.get(self.url, timeout=self.timeout_s)
            response.raise_for_status()
            certs = response.json()
        except (requests.RequestException, ValueError) as exc:
            # Keep serving the certificates we have; a token signed by a new key waits.
            # Either way, do not ask again for a while: a certs endpoint that hangs must
            # not hold every request for the fetch timeout.
            log.warning("fetching Google's certificates failed", extra={"error": str(exc)})
            self._expires = now + (CERTS_MIN_REFETCH_S if self._certs else CERTS_RETRY_S)
            if not self._certs:
                raise TokenRejected(f"certificates unavailable: {type(exc).__name__}") from None
            return
        if not isinstance(certs, dict):
            raise TokenRejected("certificates endpoint returned no key map")
        self._certs = {str(k): str(v) for k, v in certs.items()}
        self._expires = now + max_age(response.headers.get("Cache-Control"))


class GoogleIdTokenVerifier:
    """Verifies Google-signed ID tokens (shape, signature, expiry, audience, issuer).

    Returns the claims; who the caller is (`email`) is the `Authenticator`'s business.
    """

    def __init__(self, audience: str, certs_url: str | None = None) -> None:
        self.audience = audience
        self.certs_url = certs_url
        self._certs: CertCache | None = None
        self._lock = threading.Lock()

    @property
    def certs(self) -> CertCache:
        """The certificate cache (created on first use, for `certs_url` or Google's)."""
        with self._lock:
            if self._certs is None:
                self._certs = CertCache(self.certs_url or GOOGLE_CERTS_URL)
            return self._certs

    def __call__(self, token: str) -> dict[str, Any]:
        """The token's claims; raises `TokenRejected` (or a google-auth error) if not valid."""
        from google.auth import jwt

        header = check_jwt_shape(token)
        cert = self.certs.cert(header["kid"])
        claims = jwt.decode(
            token,
            certs={header["kid"]: cert},
            audience=self.audience,
            clock_skew_in_seconds=CLOCK_SKEW_S,
        )
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise TokenRejected(f"wrong issuer {str(claims.get('iss'))[:80]!r}")
        return claims


@dataclass(frozen=True)
class Caller:
    """Who was let in: `kind` api-token | id-token | open, and the email of an ID token."""

    kind: str
    email: str | None = None

    def __str__(self) -> str:
        return self.email or self.kind


def _verified(claims: dict[str, Any]) -> bool:
    value = claims.get("email_verified")
    return value is True or (isinstance(value, str) and value.lower() == "true")


class Authenticator:
    """Decides whether an Authorization header may call the endpoint, and as whom."""

    def __init__(
        self,
        api_token: str | None = None,
        verify_id_token: Callable[[str], Any] | None = None,
        *,
        allowed_callers: Iterable[str] = (),
        allow_unauthenticated: bool = False,
    ) -> None:
        self._api_token = api_token.encode("utf-8") if api_token else None
        self._verify_id_token = verify_id_token
        self.allowed_callers = frozenset(e.strip().lower() for e in allowed_callers)
        self.open = allow_unauthenticated and not api_token and verify_id_token is None

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """Token auth from HEALTH_API_TOKEN, ID tokens for HEALTH_AUDIENCE if set.

        Logs at start-up what will be refused: everything (nothing configured), or every
        ID token (HEALTH_AUDIENCE without HEALTH_ALLOWED_CALLERS).
        """
        verifier = (
            GoogleIdTokenVerifier(settings.health_audience) if settings.health_audience else None
        )
        auth = cls(
            settings.health_api_token,
            verifier,
            allowed_callers=settings.health_allowed_callers,
            allow_unauthenticated=settings.allow_unauthenticated,
        )
        if settings.allow_unauthenticated and not auth.open:
            log.warning(
                "ALLOW_UNAUTHENTICATED is ignored: HEALTH_API_TOKEN or HEALTH_AUDIENCE is set"
            )
        if not auth.open and not settings.health_api_token and verifier is None:
            log.warning(
                "the health endpoint refuses every request: set HEALTH_API_TOKEN or "
                "HEALTH_AUDIENCE with HEALTH_ALLOWED_CALLERS (or ALLOW_UNAUTHENTICATED=1)"
            )
        if verifier is not None and not auth.allowed_callers:
            log.warning(
                "HEALTH_AUDIENCE is set but HEALTH_ALLOWED_CALLERS is empty: "
                "every Google ID token is refused"
            )
        if auth.open:
            log.warning("the health endpoint is open: ALLOW_UNAUTHENTICATED=1")
        return auth

    def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller an Authorization header proves (None: refused)."""
        if self.open:
            return Caller("open")
        token = bearer_token(authorization)
        if token is None:
            return None
        if self._api_token is not None and hmac.compare_digest(
            token.encode("utf-8"), self._api_token
        ):
            return Caller("api-token")
        if self._verify_id_token is None:
            return None
        try:
            claims = self._verify_id_token(token)
        except Exception as exc:  # any failure means "not authenticated"
            log.info(
                "ID token rejected", extra={"error": type(exc).__name__, "detail": str(exc)[:200]}
            )
            return None
        email = claims.get("email") if isinstance(claims, dict) else None
        email = email.strip().lower() if isinstance(email, str) else None
        if email is None or not _verified(claims):
            log.warning("ID token refused: no verified email", extra={"caller": email})
            return None
        if email not in self.allowed_callers:
            log.warning("ID token refused: caller not allowed", extra={"caller": email})
            return None
        return Caller("id-token", email)

    def allows(self, authorization: str | None) -> bool:
        """True when the header carries an accepted token (or the endpoint is open)."""
        return self.authenticate(authorization) is not None
