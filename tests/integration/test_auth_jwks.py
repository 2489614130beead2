"""Production mode: RS256/ES256 keys from a JWKS URL (a local HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from deployments.auth import TokenVerifier
from twin import errors

ISS, AUD = "https://idp.novamind.test", "novamind-api"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(key, kid: str, alg: str) -> dict:
    data = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
    return {**data, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture(scope="module")
def jwks_url():
    body = json.dumps(
        {"keys": [_jwk(RSA_KEY, "rsa-1", "RS256"), _jwk(EC_KEY, "ec-1", "ES256")]}
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


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
