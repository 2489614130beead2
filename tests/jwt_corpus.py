"""A corpus of bad bearer tokens (RFC 8725 §2-3 and security-reliability.md §2.2).

``bad_tokens(secret, issuer, audience)`` builds, against a verifier configured with those
values, tokens that must all be refused: each differs from a valid token in one defect.
"""

from __future__ import annotations

import base64
import json
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def bad_tokens(secret: str, issuer: str, audience: str) -> dict[str, str]:
    """Named bad tokens for a verifier with this HS256 secret, issuer and audience."""
    now = int(time.time())

    def claims(**over: object) -> dict[str, object]:
        base: dict[str, object] = {
            "sub": "dr-ada",
            "role": "clinician",
            "care_team": ["team-1"],
            "iss": issuer,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        base.update(over)
        return {k: v for k, v in base.items() if v is not None}

    def hs(c: dict[str, object], key: str = secret, alg: str = "HS256", headers=None) -> str:
        return jwt.encode(c, key, algorithm=alg, headers=headers)

    head, body, sig = hs(claims()).split(".")
    # The second-to-last base64url character carries signature bits (the last may be padding).
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    return {
        "empty": "",
        "garbage": "not-a-token",
        "two segments": f"{head}.{body}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{body}.",
        "wrong secret": hs(claims(), key="t" * 64),
        "expired": hs(claims(exp=now - 3600, iat=now - 7200, nbf=now - 7200)),
        "not yet valid": hs(claims(nbf=now + 3600)),
        "no exp": hs(claims(exp=None)),
        "no iat": hs(claims(iat=None)),
        "wrong issuer": hs(claims(iss="https://evil.example")),
        "wrong audience": hs(claims(aud="another-api")),
        "no audience": hs(claims(aud=None)),
        "unknown role": hs(claims(role="superuser")),
        "no subject": hs(claims(sub=None)),
        "lifetime too long": hs(claims(exp=now + 3 * 86400)),
        "tampered payload": f"{head}.{_b64(claims(role='admin'))}.{sig}",
        "flipped signature byte": f"{head}.{body}.{flipped}",
        "RS256 where HS256 is pinned": jwt.encode(claims(), RSA_KEY, algorithm="RS256"),
        "HS512 where HS256 is pinned": hs(claims(), key=secret * 2, alg="HS512"),
        "unknown crit extension": hs(claims(), headers={"crit": ["exp-ext"], "exp-ext": 1}),
        "attacker jku": hs(claims(), key="t" * 64, headers={"jku": "https://evil.example/jwks"}),
        "kid path traversal": hs(claims(), key="t" * 64, headers={"kid": "../../dev/null"}),
        "care team not a list": hs(claims(care_team="team-1")),
        "oversized": hs(claims(pad="x" * 9000)),
    }
