"""Bearer tokens: a corpus of bad JWTs (RFC 8725) is refused; good ones give a Principal."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deployments.api.auth import TokenVerifier, mint_token
from tests.jwt_corpus import bad_tokens
from twin import errors

SECRET = "s" * 64  # long enough for HS512 too, so the HS512 case is refused for its algorithm
ISS, AUD = "https://idp.novamind.test", "novamind-api"


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
BAD = bad_tokens(SECRET, ISS, AUD)


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "dr-ada", "role": "clinician", "care_team": ["team-1"],
        "iss": ISS, "aud": AUD, "iat": now, "nbf": now, "exp": now + 600,
    }  # fmt: skip
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


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
