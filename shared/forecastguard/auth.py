"""Bearer-token authentication of the health endpoint.

A request passes with `Authorization: Bearer <token>` when the token is either the shared
`HEALTH_API_TOKEN` (compared in constant time) or a Google-signed ID token whose audience
is `HEALTH_AUDIENCE` (the function's URL). With neither configured every request is
refused, unless `ALLOW_UNAUTHENTICATED=1` says the endpoint is open on purpose.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from forecastguard.config import Settings
from forecastguard.logs import get_logger

log = get_logger(__name__)

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class GoogleIdTokenVerifier:
    """Verifies Google-signed ID tokens (signature, expiry, audience, issuer) with google-auth.

    The signing certificates are fetched from `certs_url` through one reused session.
    """

    def __init__(self, audience: str, certs_url: str | None = None) -> None:
        self.audience = audience
        self.certs_url = certs_url
        self._request: Any = None

    def __call__(self, token: str) -> dict[str, Any]:
        """The token's claims; raises ValueError (or a google-auth error) if it is not valid."""
        from google.auth.transport import requests as google_requests
        from google.oauth2 import id_token

        if self._request is None:
            self._request = google_requests.Request()
        claims = id_token.verify_token(
            token,
            self._request,
            audience=self.audience,
            certs_url=self.certs_url or GOOGLE_CERTS_URL,
        )
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise ValueError(f"wrong issuer {claims.get('iss')!r}")
        return claims


class Authenticator:
    """Decides whether an Authorization header may call the endpoint."""

    def __init__(
        self,
        api_token: str | None = None,
        verify_id_token: Callable[[str], Any] | None = None,
        *,
        allow_unauthenticated: bool = False,
    ) -> None:
        self._api_token = api_token.encode("utf-8") if api_token else None
        self._verify_id_token = verify_id_token
        self.open = allow_unauthenticated and not api_token and verify_id_token is None

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """Token auth from HEALTH_API_TOKEN, ID tokens for HEALTH_AUDIENCE if set."""
        verifier = (
            GoogleIdTokenVerifier(settings.health_audience) if settings.health_audience else None
        )
        auth = cls(
            settings.health_api_token,
            verifier,
            allow_unauthenticated=settings.allow_unauthenticated,
        )
        if not auth.open and not settings.health_api_token and verifier is None:
            log.warning(
                "the health endpoint refuses every request: set HEALTH_API_TOKEN or "
                "HEALTH_AUDIENCE (or ALLOW_UNAUTHENTICATED=1)"
            )
        return auth

    def allows(self, authorization: str | None) -> bool:
        """True when the header carries an accepted token (or the endpoint is open)."""
        if self.open:
            return True
        token = bearer_token(authorization)
        if token is None:
            return False
        if self._api_token is not None and hmac.compare_digest(
            token.encode("utf-8"), self._api_token
        ):
            return True
        if self._verify_id_token is not None:
            try:
                self._verify_id_token(token)
            except Exception as exc:  # any failure means "not authenticated"
                log.info("ID token rejected", extra={"error": type(exc).__name__})
                return False
            return True
        return False
