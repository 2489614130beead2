"""The OpenAPI document is one clients can use, and the answers keep its promises.

1. Spectral with the OWASP API Security ruleset (``tools/spectral``, pinned by its
   ``package-lock.json``) finds no error in the document; its warnings are printed.
2. Every ``/v1`` and ``/fhir`` operation declares the bearer scheme; the probes and the FHIR
   CapabilityStatement declare none.
3. Answers carry the headers the document promises: ``RateLimit`` and ``RateLimit-Policy``
   filled from the limiter's window, ``Retry-After`` on 429, ``WWW-Authenticate`` on 401,
   ``Access-Control-Allow-Origin`` for an allowed origin only; a body that is not JSON is 415.
4. A client generated from ``/openapi.json`` by openapi-python-client (into a temporary folder,
   during the test) authenticates with a bearer token against a live server, reads a twin as a
   typed model, and gets typed 401 and 404 problems back.

The tools come from ``make api-tools`` (part of ``make test``); a missing one fails the test.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.api.app import create_app
from deployments.asgi import build_app
from tests.integration.conftest import api_settings, bearer, open_env
from tests.servers import UvicornServer
from twin.client import Client, observation
from twin.domain import events as E

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPECTRAL = ROOT / "tools" / "spectral" / "node_modules" / ".bin" / "spectral"
RULESET = ROOT / "tools" / "spectral" / ".spectral.yaml"
GENERATOR = ROOT / ".venv-clientgen" / "bin" / "openapi-python-client"
POLICY = re.compile(r'^"(requests|auth-failures)";q=([0-9]+);w=60$')
REMAINING = re.compile(r'^"(requests|auth-failures)";r=([0-9]+);t=([0-9]+)$')


def _tool(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} missing: run `make api-tools` (part of `make test`)")
    return path


def _document() -> dict[str, Any]:
    def unopened() -> Any:
        raise AssertionError("the document needs no services")

    document: dict[str, Any] = create_app(open_services=unopened).openapi()
    return document


def test_the_document_passes_the_owasp_ruleset(tmp_path: Path) -> None:
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(_document()))
    result = subprocess.run(
        [str(_tool(SPECTRAL)), "lint", str(path), "--ruleset", str(RULESET), "-f", "json", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=RULESET.parent,
    )
    assert result.stdout.strip(), result.stderr
    findings = json.loads(result.stdout)
    errors = [f for f in findings if f["severity"] == 0]
    for finding in findings:  # shown with -rP and on failure
        level = ("error", "warning", "info", "hint")[finding["severity"]]
        print(f"{level}: {finding['code']} {'/'.join(map(str, finding['path']))}")
    assert not errors, [(e["code"], "/".join(map(str, e["path"]))) for e in errors]
    assert result.returncode == 0, result.stderr


def test_every_v1_operation_declares_the_bearer_scheme_and_its_problems() -> None:
    document = _document()
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert scheme["bearerFormat"] == "JWT" and "RFC8725" in scheme["description"]
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), "operation ids name the generated client's functions"
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            label = f"{method.upper()} {path}"
            if path.startswith("/health/") or path == "/fhir/metadata":
                assert op["security"] == [{}], label
                continue
            assert op["security"] == [{"bearerAuth": []}], label
            # Under /fhir errors are FHIR OperationOutcomes, elsewhere RFC 9457 problems.
            media, model = (
                ("application/fhir+json", "OperationOutcome")
                if path.startswith("/fhir/")
                else ("application/problem+json", "Problem")
            )
            for status in ("401", "403", "429", "500", "503"):
                content = op["responses"][status]["content"]
                assert content[media]["schema"] == {"$ref": f"#/components/schemas/{model}"}, (
                    label,
                    status,
                )
            assert "Retry-After" in op["responses"]["429"]["headers"], label
            success = next(code for code in op["responses"] if code.startswith("2"))
            headers = op["responses"][success]["headers"]
            assert headers["RateLimit"]["required"] and headers["RateLimit-Policy"]["required"]
            if "requestBody" in op:
                assert {"400", "413", "415", "422"} <= op["responses"].keys(), label


async def test_answers_carry_the_rate_limit_headers_from_the_window(tmp_path: Path) -> None:
    settings = api_settings(tmp_path, rate_limit_per_minute=3, auth_failures_per_minute=2)
    async with open_env(settings) as env:
        admin = bearer("admin", "adm")
        seen = []
        for _ in range(3):
            answer = await env.http.get("/v1/patients?care_team=t1", headers=admin)
            assert answer.status_code == 200
            assert POLICY.match(answer.headers["RateLimit-Policy"]).groups() == ("requests", "3")
            name, remaining, reset = REMAINING.match(answer.headers["RateLimit"]).groups()
            assert name == "requests" and 0 < int(reset) <= 60
            seen.append(int(remaining))
            assert re.fullmatch("[0-9a-f]{32}", answer.headers["X-Request-ID"])
        assert seen == [2, 1, 0]
        refused = await env.http.get("/v1/patients?care_team=t1", headers=admin)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert REMAINING.match(refused.headers["RateLimit"]).group(2) == "0"

        # Before a caller is known, the address's budget of failed authentications.
        wrong = {"Authorization": "Bearer not-a-token"}
        first = await env.http.get("/v1/patients", headers=wrong)
        assert first.status_code == 401 and first.headers["WWW-Authenticate"] == "Bearer"
        assert POLICY.match(first.headers["RateLimit-Policy"]).groups() == ("auth-failures", "2")
        assert REMAINING.match(first.headers["RateLimit"]).group(2) == "1"
        assert (await env.http.get("/v1/patients", headers=wrong)).status_code == 401
        spent = await env.http.get("/v1/patients", headers=wrong)
        assert spent.status_code == 429 and "Retry-After" in spent.headers

        # The probes are neither authenticated nor counted.
        probe = await env.http.get("/health/liveness")
        assert probe.status_code == 200 and "RateLimit" not in probe.headers


async def test_a_body_that_is_not_json_is_refused_with_415(api_env) -> None:
    answer = await api_env.http.post(
        "/v1/patients",
        content=b'{"name": "x"}',
        headers={**bearer("admin", "adm"), "Content-Type": "text/plain"},
    )
    assert answer.status_code == 415
    assert answer.json() == {
        "type": "about:blank",
        "title": "Unsupported Media Type",
        "status": 415,
    }


async def test_only_allowed_origins_may_read_answers_in_a_browser(tmp_path: Path) -> None:
    allowed = "https://clinic.example.org"
    settings = api_settings(tmp_path, cors_origins=[allowed])
    app = build_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://novamind") as http,
    ):
        admin = bearer("admin", "adm")
        ok = await http.get("/v1/patients?care_team=t1", headers={**admin, "Origin": allowed})
        assert ok.headers["Access-Control-Allow-Origin"] == allowed
        exposed = ok.headers["Access-Control-Expose-Headers"]
        assert "RateLimit" in exposed and "Retry-After" in exposed
        other = await http.get(
            "/v1/patients?care_team=t1", headers={**admin, "Origin": "https://evil.example"}
        )
        assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
        preflight = await http.options(
            "/v1/patients",
            headers={
                "Origin": allowed,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == allowed
    # By default no origin is allowed.
    async with open_env(api_settings(tmp_path / "default")) as env:
        answer = await env.http.get(
            "/v1/patients?care_team=t1", headers={**bearer("admin", "adm"), "Origin": allowed}
        )
        assert "Access-Control-Allow-Origin" not in answer.headers


def test_settings_refuse_a_wildcard_or_plain_http_origin_outside_local(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cors_origins"):
        api_settings(tmp_path, cors_origins=["*"])
    with pytest.raises(ValueError, match="only https:// CORS origins"):
        api_settings(
            tmp_path,
            environment="prod",
            cors_origins=["http://clinic.example.org"],
            database_url="postgresql://db/x",
            s3_bucket="b",
            kms_key_id="k",
            jwks_url="https://idp.example.org/jwks",
            public_base_url="https://api.example.org",
            jwt_secret=None,
        )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    server = UvicornServer(build_app(api_settings(tmp_path_factory.mktemp("live"))))
    server.start(timeout_s=30)
    token = bearer("clinician", "dr-gen", ("team-1",))["Authorization"].split()[1]
    with Client(server.url, token=token) as client:
        pid = client.create_patient(
            name="Generated Canary", birth_date="1984-04-04", mrn="GEN-1", care_team="team-1"
        )
        client.add_observations(pid, [observation(E.Phq9(17), effective=datetime.now(UTC))])
    yield server.url, pid
    server.stop()


def test_a_generated_client_authenticates_and_reads_a_twin(
    live: tuple[str, str], tmp_path: Path
) -> None:
    url, pid = live
    spec = tmp_path / "openapi.json"
    spec.write_bytes(httpx.get(f"{url}/openapi.json").content)
    config = tmp_path / "generator.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: the code is imported, not read
    package = "novamind_generated_client"
    generated = subprocess.run(
        [str(_tool(GENERATOR)), "generate", "--path", str(spec), "--meta", "none",
         "--output-path", str(tmp_path / package), "--config", str(config)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "Unable to" not in generated.stdout, generated.stdout  # every operation generated
    sys.path.insert(0, str(tmp_path))
    try:
        api = importlib.import_module(package)
        twin_state = importlib.import_module(f"{package}.api.twins.twin_state")
        models = importlib.import_module(f"{package}.models")
        token = bearer("clinician", "dr-gen", ("team-1",))["Authorization"].split()[1]
        with api.AuthenticatedClient(base_url=url, token=token) as client:
            read = twin_state.sync_detailed(patient_id=pid, client=client)
            assert read.status_code == 200, read.content
            twin = read.parsed
            assert isinstance(twin, models.TwinOut)
            assert twin.patient_id == pid and twin.last_seq == 1
            assert 0.0 <= twin.p_severe <= 1.0
            assert isinstance(twin.as_of, datetime) and twin.as_of.tzinfo is not None
            assert re.match(REMAINING, read.headers["RateLimit"])
            missing = twin_state.sync_detailed(patient_id="pt_nobody", client=client)
            assert missing.status_code == 404
            assert isinstance(missing.parsed, models.Problem) and missing.parsed.status == 404
        with api.AuthenticatedClient(base_url=url, token="not-a-token") as client:
            refused = twin_state.sync_detailed(patient_id=pid, client=client)
            assert refused.status_code == 401
            assert isinstance(refused.parsed, models.Problem)
            assert refused.parsed.title == "Unauthorized"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == package]:
            del sys.modules[name]
