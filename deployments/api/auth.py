"""Bearer-token authentication (JWT, RFC 7519) following RFC 8725's best practices.

Why PyJWT: a maintained JOSE implementation with algorithm pinning, claim validation and a JWKS
client; none of it is hand-written here. Only when the IdP's key set is fetched is decided here
(``_KeySet``: every ``JWKS_REFRESH_S``, for an unknown ``kid`` at most every
``JWKS_UNKNOWN_KID_S``, an IdP outage bridged by its last published keys), so that the whole
policy runs on one injectable clock.

- Local: HS256 with a secret of at least 32 bytes (``mint_token`` issues tokens for ``make up``).
- Production: RS256/ES256 keys from a JWKS URL (the configured URL only; ``jku``/``x5u`` headers
  are never followed).
- Pinned algorithms (``none`` and algorithm confusion are refused); ``exp``, ``iat``, ``sub``,
  ``iss``, ``aud`` and ``role`` required; ``nbf`` honoured; lifetimes over ``max_lifetime_s``
  refused; tokens over 8 KiB refused; unknown ``crit`` extensions refused.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt

from twin import errors
from twin.service.access import ROLES, Principal, Role

__all__ = ["ROLES", "Principal", "Role", "TokenVerifier", "mint_token"]

MAX_TOKEN_BYTES = 8192
#: Seconds a fetched JWKS is used before it is fetched again (a withdrawn key stops working
#: within this).
JWKS_REFRESH_S = 300.0
#: Least seconds between two fetches for a ``kid`` the cached set lacks (a rotated-in key is
#: accepted within this; forged kids cannot make the verifier ask the IdP more often).
JWKS_UNKNOWN_KID_S = 30.0
#: Seconds a JWKS fetch may take.
JWKS_TIMEOUT_S = 5.0
#: While the IdP is unreachable or answers no key set: seconds between attempts, and how long
#: (seconds since the IdP last published them) its last published keys keep working.
JWKS_RETRY_S = 30.0
JWKS_MAX_STALE_S = 6 * 3600.0
MIN_SECRET_BYTES = 32


class _KeySet:
    """The IdP's signing keys, fetched when the rules below say so, on an injectable clock.

    PyJWT fetches (the configured URL only, no redirects) and parses the set; when to fetch is
    decided here, in one place:

    1. A set younger than ``refresh_s`` answers the kids it holds without a fetch.
    2. An older set is fetched again before it answers (a withdrawn key is refused then).
    3. A kid the set lacks fetches it again only if the last fetch is ``unknown_kid_s`` old.
    4. A fetch that fails (unreachable, an answer that is no key set) is not tried again for
       ``retry_s``; meanwhile the last published set answers for ``max_stale_s`` after it was
       fetched, and a kid it lacks cannot be checked (503, not 401).

    Fetches are serialised, so concurrent requests that need one share it.
    """

    def __init__(
        self,
        client: jwt.PyJWKClient,
        *,
        refresh_s: float,
        unknown_kid_s: float,
        retry_s: float,
        max_stale_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._refresh_s = refresh_s
        self._unknown_kid_s = unknown_kid_s
        self._retry_s = retry_s
        self._max_stale_s = max_stale_s
        self._clock = clock
        self._lock = threading.Lock()
        # (kid -> key, monotonic seconds when fetched); replaced whole, read without the lock.
        self._set: tuple[dict[str, Any], float] | None = None
        self._last_fetch = -math.inf
        self._failed_until = -math.inf

    def key(self, kid: str | None) -> Any:
        """The key for ``kid``.

        Raises:
            AuthenticationError: The IdP's current set has no such key.
            StorageUnavailableError: The IdP cannot be asked now and the last set it published
                has no such key or is older than ``max_stale_s``.
        """
        known = self._set
        if known is not None and kid in known[0] and self._clock() - known[1] < self._refresh_s:
            return known[0][kid]
        with self._lock:
            now = self._clock()
            known = self._set
            if known is not None and now - known[1] < self._refresh_s:
                if kid in known[0]:
                    return known[0][kid]  # fetched by the request this one waited for
                if now - self._last_fetch < self._unknown_kid_s:
                    raise errors.AuthenticationError("invalid bearer token")
            if now < self._failed_until:
                return self._stale(kid, now)
            self._last_fetch = now
            try:
                keys = self._fetch()
            except (jwt.PyJWTError, ValueError, OSError):
                self._failed_until = now + self._retry_s
                return self._stale(kid, now)
            self._set = (keys, now)
        if kid not in keys:
            raise errors.AuthenticationError("invalid bearer token")
        return keys[kid]

    def _fetch(self) -> dict[str, Any]:
        data = self._client.fetch_data()  # a JSON object, else PyJWKClientError
        listed = data.get("keys")
        if not isinstance(listed, list):
            raise jwt.PyJWKClientError("the JWKS endpoint answered no key set")
        try:
            found = jwt.PyJWKSet(listed).keys
        except jwt.PyJWKSetError:
            # An empty set, or none of its keys usable: an answer (nothing verifies until the
            # IdP publishes a key), not an outage that would keep the previous keys working.
            return {}
        return {k.key_id: k.key for k in found if k.key_id and k.public_key_use in ("sig", None)}

    def _stale(self, kid: str | None, now: float) -> Any:
        known = self._set
        if known is None or kid not in known[0] or now - known[1] > self._max_stale_s:
            raise errors.StorageUnavailableError("the identity provider is unreachable; retry")
        return known[0][kid]


class TokenVerifier:
    """Verifies bearer tokens against one issuer and audience.

    Args:
        issuer: Expected ``iss``.
        audience: Expected ``aud``.
        secret: HS256 secret (local use); exclusive with ``jwks_url``.
        jwks_url: JWKS endpoint for RS256/ES256 keys (production).
        max_lifetime_s: Longest accepted ``exp - iat``.
        leeway_s: Clock skew tolerated on ``exp``/``nbf``/``iat``.
        jwks_refresh_s: Seconds a fetched key set is used before it is fetched again.
        jwks_unknown_kid_s: Least seconds between fetches caused by a ``kid`` the set lacks.
        jwks_retry_s: Seconds between attempts while the IdP is unreachable.
        jwks_max_stale_s: Seconds the last published keys keep working while it is.
        clock: Monotonic seconds the key set's ages are measured on.
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
        jwks_unknown_kid_s: float = JWKS_UNKNOWN_KID_S,
        jwks_retry_s: float = JWKS_RETRY_S,
        jwks_max_stale_s: float = JWKS_MAX_STALE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (secret is None) == (jwks_url is None):
            raise errors.ConfigurationError("configure exactly one of a secret or a JWKS URL")
        if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
            raise errors.ConfigurationError("the HS256 secret must be at least 32 bytes")
        self._issuer = issuer
        self._audience = audience
        self._secret = secret
        # PyJWKClient only fetches and parses here (its own caches off): _KeySet decides when.
        self._jwks = (
            _KeySet(
                jwt.PyJWKClient(
                    jwks_url, cache_keys=False, cache_jwk_set=False, timeout=JWKS_TIMEOUT_S
                ),
                refresh_s=jwks_refresh_s,
                unknown_kid_s=jwks_unknown_kid_s,
                retry_s=jwks_retry_s,
                max_stale_s=jwks_max_stale_s,
                clock=clock,
            )
            if jwks_url
            else None
        )
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
        return self._jwks.key(kid if isinstance(kid, str) else None)

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
