"""Production mode: RS256/ES256 keys from a JWKS URL (a local HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from deployments.api.auth import TokenVerifier
from twin import errors

ISS, AUD = "https://idp.novamind.test", "novamind-api"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(key, kid: str, alg: str) -> dict:
    data = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
    return {**data, "kid": kid, "alg": alg, "use": "sig"}


class _IdP:
    """A JWKS endpoint whose published keys the test changes, counting fetches."""

    def __init__(self, keys: list[dict]) -> None:
        self.keys = keys
        self.fetches = 0
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                idp.fetches += 1
                body = json.dumps({"keys": idp.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def jwks_url():
    idp = _IdP([_jwk(RSA_KEY, "rsa-1", "RS256"), _jwk(EC_KEY, "ec-1", "ES256")])
    yield idp.url
    idp.close()


def test_a_removed_key_stops_working_and_a_new_one_works_without_a_restart():
    idp = _IdP([_jwk(RSA_KEY, "rsa-1", "RS256")])
    try:
        verifier = TokenVerifier(issuer=ISS, audience=AUD, jwks_url=idp.url, jwks_refresh_s=0.3)
        old = jwt.encode(_claims(), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
        assert verifier.verify(old).subject == "svc-etl"
        assert verifier.verify(old) and idp.fetches == 1  # the set is cached meanwhile
        # The IdP rotates: the old key is withdrawn, a new one published. Once the cached set
        # has aged out, the new key is accepted and the old one refused, without a restart.
        idp.keys = [_jwk(EC_KEY, "ec-2", "ES256")]
        time.sleep(0.4)
        new = jwt.encode(_claims(), EC_KEY, algorithm="ES256", headers={"kid": "ec-2"})
        assert verifier.verify(new).subject == "svc-etl"
        with pytest.raises(errors.AuthenticationError):
            verifier.verify(old)
        assert idp.fetches == 2
    finally:
        idp.close()


def _claims() -> dict:
    now = int(time.time())
    return {
        "sub": "svc-etl",
        "role": "service",
        "iss": ISS,
        "aud": AUD,
        "iat": now,
        "exp": now + 300,
    }


@pytest.mark.parametrize(
    ("key", "kid", "alg"), [(RSA_KEY, "rsa-1", "RS256"), (EC_KEY, "ec-1", "ES256")]
)
def test_signed_by_a_published_key(jwks_url, key, kid, alg):
    token = jwt.encode(_claims(), key, algorithm=alg, headers={"kid": kid})
    assert (
        TokenVerifier(issuer=ISS, audience=AUD, jwks_url=jwks_url).verify(token).role == "service"
    )


def test_unknown_kid_foreign_key_jku_and_hmac_are_refused(jwks_url):
    verifier = TokenVerifier(issuer=ISS, audience=AUD, jwks_url=jwks_url)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = [
        jwt.encode(_claims(), stranger, algorithm="RS256", headers={"kid": "rsa-9"}),
        jwt.encode(_claims(), stranger, algorithm="RS256", headers={"kid": "rsa-1"}),
        jwt.encode(
            _claims(),
            stranger,
            algorithm="RS256",
            headers={"kid": "rsa-1", "jku": "http://127.0.0.1:9/evil.json"},
        ),
        jwt.encode(_claims(), "k" * 64, algorithm="HS256", headers={"kid": "rsa-1"}),
    ]
    for token in forged:
        with pytest.raises(errors.AuthenticationError):
            verifier.verify(token)


def test_an_idp_outage_keeps_known_keys_working_and_is_no_authentication_failure():
    idp = _IdP([_jwk(RSA_KEY, "rsa-1", "RS256")])
    verifier = TokenVerifier(issuer=ISS, audience=AUD, jwks_url=idp.url, jwks_refresh_s=0.2)
    known = jwt.encode(_claims(), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
    assert verifier.verify(known).subject == "svc-etl"
    idp.close()  # the IdP goes away
    time.sleep(0.3)  # past the cached set's lifespan: the next verify must fetch
    assert verifier.verify(known).subject == "svc-etl"  # the last published key still works
    stranger = jwt.encode(_claims(), EC_KEY, algorithm="ES256", headers={"kid": "ec-9"})
    with pytest.raises(errors.StorageUnavailableError, match="unreachable"):
        verifier.verify(stranger)  # cannot be checked now: 503, not a failed authentication
