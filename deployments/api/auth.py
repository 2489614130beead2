"""Bearer-token authentication (JWT, RFC 7519) following RFC 8725's best practices.

Why PyJWT: a maintained JOSE implementation with algorithm pinning, claim validation and a JWKS
client; none of it is hand-written here.

- Local: HS256 with a secret of at least 32 bytes (``mint_token`` issues tokens for ``make up``).
- Production: RS256/ES256 keys from a JWKS URL (the configured URL only; ``jku``/``x5u`` headers
  are never followed).
- Pinned algorithms (``none`` and algorithm confusion are refused); ``exp``, ``iat``, ``sub``,
  ``iss``, ``aud`` and ``role`` required; ``nbf`` honoured; lifetimes over ``max_lifetime_s``
  refused; tokens over 8 KiB refused; unknown ``crit`` extensions refused.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from twin import errors
from twin.service.access import ROLES, Principal, Role

__all__ = ["ROLES", "Principal", "Role", "TokenVerifier", "mint_token"]

MAX_TOKEN_BYTES = 8192
#: Seconds a fetched JWKS is used before it is fetched again.
JWKS_REFRESH_S = 300.0
#: Seconds a JWKS fetch may take.
JWKS_TIMEOUT_S = 5.0
#: While the IdP is unreachable: seconds between attempts, and how long (seconds since the IdP
#: last published it) a known key keeps working.
JWKS_RETRY_S = 30.0
JWKS_MAX_STALE_S = 6 * 3600.0
#: Signing keys remembered for an IdP outage.
MAX_KNOWN_KEYS = 32
MIN_SECRET_BYTES = 32


class TokenVerifier:
    """Verifies bearer tokens against one issuer and audience.

    Args:
        issuer: Expected ``iss``.
        audience: Expected ``aud``.
        secret: HS256 secret (local use); exclusive with ``jwks_url``.
        jwks_url: JWKS endpoint for RS256/ES256 keys (production).
        max_lifetime_s: Longest accepted ``exp - iat``.
        leeway_s: Clock skew tolerated on ``exp``/``nbf``/``iat``.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        secret: str | None = None,
        jwks_url: str | None = None,
        max_lifetime_s: int = 12 * 3600,
        leeway_s: int = 30,
        jwks_refresh_s: float = JWKS_REFRESH_S,
    ) -> None:
        if (secret is None) == (jwks_url is None):
            raise errors.ConfigurationError("configure exactly one of a secret or a JWKS URL")
        if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
            raise errors.ConfigurationError("the HS256 secret must be at least 32 bytes")
        self._issuer = issuer
        self._audience = audience
        self._secret = secret
        # The key set is fetched again every jwks_refresh_s (a key the IdP removed stops being
        # accepted then, a new one is accepted without a restart), and for an unknown kid at
        # most every 30 s (PyJWKClient's cooldown, which also spares the IdP from forged kids).
        # No per-key cache: PyJWKClient's keeps a key for as long as the process lives.
        self._jwks = (
            jwt.PyJWKClient(
                jwks_url,
                cache_keys=False,
                cache_jwk_set=True,
                lifespan=jwks_refresh_s,
                timeout=JWKS_TIMEOUT_S,
            )
            if jwks_url
            else None
        )
        # kid -> (key, when the IdP last published it), newest last.
        self._known: dict[str, tuple[Any, float]] = {}
        self._idp_down_until = 0.0
        self._algorithms = ["HS256"] if secret is not None else ["RS256", "ES256"]
        self._max_lifetime_s = max_lifetime_s
        self._leeway_s = leeway_s

    @property
    def fetches_keys(self) -> bool:
        """Whether verifying may fetch the key set over the network (call it off the loop)."""
        return self._jwks is not None

    def _key(self, token: str) -> Any:
        if self._jwks is None:
            return self._secret
        kid = jwt.get_unverified_header(token).get("kid")
        kid = kid if isinstance(kid, str) else None
        if time.monotonic() < self._idp_down_until:
            return self._last_known(kid)
        try:
            key = self._jwks.get_signing_key_from_jwt(token).key
        except (jwt.PyJWKClientConnectionError, OSError):
            # The IdP is unreachable: the keys it published last keep working for a while,
            # and it is not asked again for JWKS_RETRY_S (every request would wait on it).
            self._idp_down_until = time.monotonic() + JWKS_RETRY_S
            return self._last_known(kid)
        except jwt.PyJWKClientError:
            self._known.pop(kid or "", None)  # the IdP answered without it: withdrawn
            raise
        if kid is not None:
            self._known.pop(kid, None)
            self._known[kid] = (key, time.monotonic())
            while len(self._known) > MAX_KNOWN_KEYS:
                self._known.pop(next(iter(self._known)))
        return key

    def _last_known(self, kid: str | None) -> Any:
        """A key the IdP published recently, while it cannot be reached.

        Raises:
            StorageUnavailableError: No such key, or it is older than ``JWKS_MAX_STALE_S``
                (503: the credential may be valid; nothing is counted against the caller).
        """
        found = self._known.get(kid) if kid is not None else None
        if found is None or time.monotonic() - found[1] > JWKS_MAX_STALE_S:
            raise errors.StorageUnavailableError("the identity provider is unreachable; retry")
        return found[0]

    def verify(self, token: str) -> Principal:
        """Verify and decode a bearer token.

        Raises:
            AuthenticationError: Any defect; the reason is generic (no oracle for attackers).
        """
        if not token or len(token) > MAX_TOKEN_BYTES:
            raise errors.AuthenticationError("invalid bearer token")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self._algorithms or header.get("crit"):
                raise errors.AuthenticationError("invalid bearer token")
            claims = jwt.decode(
                token,
                self._key(token),
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            raise errors.AuthenticationError("invalid bearer token") from None
        role, subject, team = claims.get("role"), claims.get("sub"), claims.get("care_team", [])
        lifetime = int(claims["exp"]) - int(claims["iat"])
        if (
            role not in ROLES
            or not isinstance(subject, str)
            or not subject
            or lifetime > self._max_lifetime_s
            or not isinstance(team, list)
            or not all(isinstance(t, str) for t in team)
        ):
            raise errors.AuthenticationError("invalid bearer token")
        return Principal(subject, role, tuple(team), int(claims["exp"]))


def mint_token(
    secret: str,
    *,
    subject: str,
    role: Role,
    issuer: str,
    audience: str,
    care_team: tuple[str, ...] = (),
    ttl_s: int = 3600,
) -> str:
    """Issue a local HS256 token (``make up`` and tests; production tokens come from the IdP)."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "role": role,
        "care_team": list(care_team),
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm="HS256")
