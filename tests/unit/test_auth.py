"""Bearer tokens: a corpus of bad JWTs (RFC 8725) is refused; good ones give a Principal."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deployments.auth import TokenVerifier, mint_token
from twin import errors

SECRET = "s" * 64  # long enough for HS512 too, so the HS512 case is refused for its algorithm
ISS, AUD = "https://idp.novamind.test", "novamind-api"


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "dr-ada", "role": "clinician", "care_team": ["team-1"],
        "iss": ISS, "aud": AUD, "iat": now, "nbf": now, "exp": now + 600,
    }  # fmt: skip
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _hs(claims: dict[str, object], key: str = SECRET, alg: str = "HS256", headers=None) -> str:
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
now = int(time.time())
good = _hs(_claims())
head, body, sig = good.split(".")

BAD = {
    "empty": "",
    "garbage": "not-a-token",
    "two segments": f"{head}.{body}",
    "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{body}.",
    "wrong secret": _hs(_claims(), key="t" * 64),
    "expired": _hs(_claims(exp=now - 3600, iat=now - 7200, nbf=now - 7200)),
    "not yet valid": _hs(_claims(nbf=now + 3600)),
    "no exp": _hs(_claims(exp=None)),
    "no iat": _hs(_claims(iat=None)),
    "wrong issuer": _hs(_claims(iss="https://evil.example")),
    "wrong audience": _hs(_claims(aud="another-api")),
    "no audience": _hs(_claims(aud=None)),
    "unknown role": _hs(_claims(role="superuser")),
    "no subject": _hs(_claims(sub=None)),
    "lifetime too long": _hs(_claims(exp=now + 3 * 86400)),
    "tampered payload": f"{head}.{_b64(_claims(role='admin'))}.{sig}",
    "RS256 where HS256 is pinned": jwt.encode(_claims(), RSA_KEY, algorithm="RS256"),
    "HS512 where HS256 is pinned": _hs(_claims(), alg="HS512"),
    "unknown crit extension": _hs(_claims(), headers={"crit": ["exp-ext"], "exp-ext": 1}),
    "care team not a list": _hs(_claims(care_team="team-1")),
    "oversized": _hs(_claims(pad="x" * 9000)),
}


@pytest.mark.parametrize("token", list(BAD.values()), ids=list(BAD))
def test_bad_tokens_are_refused_with_one_generic_reason(token):
    verifier = TokenVerifier(issuer=ISS, audience=AUD, secret=SECRET)
    with pytest.raises(errors.AuthenticationError) as info:
        verifier.verify(token)
    assert str(info.value) == "invalid bearer token"


def test_corpus_size():
    assert len(BAD) >= 15


def test_a_good_token_gives_the_principal():
    token = mint_token(
        SECRET, subject="dr-ada", role="clinician", issuer=ISS, audience=AUD, care_team=("team-1",)
    )
    principal = TokenVerifier(issuer=ISS, audience=AUD, secret=SECRET).verify(token)
    assert (principal.subject, principal.role, principal.care_team) == (
        "dr-ada",
        "clinician",
        ("team-1",),
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"secret": "short"}, {}, {"secret": SECRET, "jwks_url": "http://127.0.0.1/jwks"}],
)
def test_unsafe_or_ambiguous_configuration_is_refused(kwargs):
    with pytest.raises(errors.ConfigurationError):
        TokenVerifier(issuer=ISS, audience=AUD, **kwargs)


def test_rsa_public_key_pem_is_not_usable_as_an_hmac_secret():
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(jwt.exceptions.InvalidKeyError):
        jwt.encode(_claims(), pem, algorithm="HS256")  # PyJWT refuses the confusion outright
