"""Production mode: RS256/ES256 keys from a JWKS URL (a local HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
        self.delay_s = 0.0  # how long each answer takes
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                idp.fetches += 1
                time.sleep(idp.delay_s)
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


# -- the rotation promises of docs/operations.md §2, on the default intervals -----------------
# "the key set is fetched again every 5 minutes and for an unknown kid (at most every 30 s); a
# withdrawn key stops working within 5 minutes": a real JWKS endpoint whose set changes, and a
# verifier on a clock the test moves (no sleeps).


class _Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp():
    server = _IdP([_jwk(RSA_KEY, "rsa-1", "RS256")])
    yield server
    server.close()


def _signed(key, kid: str, alg: str) -> str:
    return jwt.encode(_claims(), key, algorithm=alg, headers={"kid": kid})


def test_a_key_published_after_the_set_was_cached_works_within_30_s_without_a_restart(idp):
    clock = _Clock()
    verifier = TokenVerifier(issuer=ISS, audience=AUD, jwks_url=idp.url, clock=clock)
    old, new = _signed(RSA_KEY, "rsa-1", "RS256"), _signed(EC_KEY, "ec-2", "ES256")
    assert verifier.verify(old).subject == "svc-etl"
    assert idp.fetches == 1
    idp.keys = [*idp.keys, _jwk(EC_KEY, "ec-2", "ES256")]  # the IdP rotates a key in
    clock.now += 29.9  # within the floor since the last fetch: the IdP is not asked
    with pytest.raises(errors.AuthenticationError):
        verifier.verify(new)
    assert idp.fetches == 1
    clock.now += 0.1  # 30 s since the last fetch: the unknown kid fetches the set again
    assert verifier.verify(new).subject == "svc-etl"
    assert verifier.verify(old).subject == "svc-etl"  # still published
    assert idp.fetches == 2


def test_a_withdrawn_key_stops_working_once_the_cached_set_is_5_minutes_old(idp):
    clock = _Clock()
    verifier = TokenVerifier(issuer=ISS, audience=AUD, jwks_url=idp.url, clock=clock)
    old = _signed(RSA_KEY, "rsa-1", "RS256")
    assert verifier.verify(old).subject == "svc-etl"
    idp.keys = [_jwk(EC_KEY, "ec-2", "ES256")]  # rsa-1 withdrawn
    clock.now += 299.9
    assert verifier.verify(old).subject == "svc-etl"  # the cached set, not asked again
    assert idp.fetches == 1
    clock.now += 0.1  # 5 minutes: the set is fetched again, without rsa-1
    with pytest.raises(errors.AuthenticationError):
        verifier.verify(old)
    assert idp.fetches == 2
    clock.now += 20.0  # refused from the fresh set, which has the new key
    with pytest.raises(errors.AuthenticationError):
        verifier.verify(old)
    assert verifier.verify(_signed(EC_KEY, "ec-2", "ES256")).subject == "svc-etl"
    assert idp.fetches == 2
    clock.now += 10.0  # past the floor, the withdrawn kid asks again: still refused
    with pytest.raises(errors.AuthenticationError):
        verifier.verify(old)
    assert idp.fetches == 3


def test_a_flood_of_unknown_kids_fetches_at_most_once_per_30_s(idp):
    clock = _Clock()
    verifier = TokenVerifier(issuer=ISS, audience=AUD, jwks_url=idp.url, clock=clock)
    assert verifier.verify(_signed(RSA_KEY, "rsa-1", "RS256")).subject == "svc-etl"
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = [_signed(stranger, f"kid-{i}", "ES256") for i in range(400)]

    def refused(token: str) -> type[Exception] | None:
        try:
            verifier.verify(token)
        except errors.TwinError as exc:
            return type(exc)
        return None

    # From 16 threads at once (the API verifies off its event loop), on each 10 s for two
    # minutes: the floor has passed at 30, 60, 90 and 120 s, once each.
    with ThreadPoolExecutor(max_workers=16) as pool:
        for step in range(13):
            clock.now = 1000.0 + 10.0 * step
            batch = forged[step * 30 : step * 30 + 30]
            assert set(pool.map(refused, batch)) == {errors.AuthenticationError}
    assert idp.fetches == 1 + 4


def test_requests_arriving_while_the_set_is_fetched_again_share_that_fetch(idp):
    clock = _Clock()
    verifier = TokenVerifier(issuer=ISS, audience=AUD, jwks_url=idp.url, clock=clock)
    known = _signed(RSA_KEY, "rsa-1", "RS256")
    assert verifier.verify(known).subject == "svc-etl"
    idp.delay_s = 0.2  # a slow IdP: the burst below arrives while the first fetch waits
    clock.now += 300.0
    with ThreadPoolExecutor(max_workers=16) as pool:
        subjects = list(pool.map(lambda token: verifier.verify(token).subject, [known] * 16))
    assert subjects == ["svc-etl"] * 16
    assert idp.fetches == 2


def test_an_answer_that_is_no_key_set_is_an_outage_not_asked_again_for_30_s(idp):
    clock = _Clock()
    verifier = TokenVerifier(issuer=ISS, audience=AUD, jwks_url=idp.url, clock=clock)
    known = _signed(RSA_KEY, "rsa-1", "RS256")
    assert verifier.verify(known).subject == "svc-etl"
    idp.keys = "maintenance"  # a broken IdP answer: {"keys": "maintenance"}
    clock.now += 300.0
    for _ in range(20):  # the set is due, the fetch fails: the last published keys answer
        assert verifier.verify(known).subject == "svc-etl"
        with pytest.raises(errors.StorageUnavailableError):
            verifier.verify(_signed(EC_KEY, "ec-9", "ES256"))  # cannot be checked: 503
    assert idp.fetches == 2  # one failed fetch, then none for 30 s
    idp.keys = []  # an empty set is an answer: no key verifies (not an outage)
    clock.now += 30.0
    with pytest.raises(errors.AuthenticationError):
        verifier.verify(known)
    assert idp.fetches == 3
