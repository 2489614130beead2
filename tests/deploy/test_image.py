"""The container image definition: checkov's Dockerfile checks, hadolint, and our own rules."""

from __future__ import annotations

import subprocess

from tests.deploy.conftest import ROOT, assert_checkov_clean, iac_tool, run_checkov

DOCKERFILE = ROOT / "Dockerfile"


def test_checkov_dockerfile_checks_pass():
    # Every Dockerfile check checkov has (no ID list: all of them gate).
    assert_checkov_clean(run_checkov(DOCKERFILE, "dockerfile"))


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [str(iac_tool("hadolint")), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_unprivileged_with_writes_only_under_tmp():
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users[-1] == "10001:10001"  # the last USER wins; high UID, not root
    assert "HEALTHCHECK" in " ".join(lines)
    env = " ".join(lines[lines.index(next(x for x in lines if x.startswith("ENV HOME="))) :])
    for variable in ("HOME=/tmp/", "XDG_CACHE_HOME=/tmp/", "NOVAMIND_DATA_DIR=/tmp/"):
        assert variable in env, variable


def test_build_context_leaves_out_data_secrets_and_environments():
    rules = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert "*" in rules
    assert allowed == {"pyproject.toml", "README.md", "twin", "storage", "actors", "deployments"}


def test_serve_runs_in_the_image_as_the_settings_default_asks():
    # KubeRay pods take Serve's flags from the image; `novamind up` from the settings.
    from deployments.ray_env import serve_flags
    from twin.settings import TwinSettings

    lines = [line.strip().rstrip("\\").strip() for line in DOCKERFILE.read_text().splitlines()]
    image = dict(
        line.removeprefix("ENV ").split("=", 1)
        for line in lines
        if line.removeprefix("ENV ").startswith("RAY_SERVE_")
    )
    wanted = serve_flags(TwinSettings(data_dir=ROOT / "data"))
    assert {k: v for k, v in image.items() if k in wanted} == wanted


def test_ray_in_the_image_has_the_platforms_system_config():
    # KubeRay's `ray start` reads Ray's settings from RAY_<name>; `novamind up` passes the same.
    from deployments.ray_env import system_env

    lines = [line.strip().rstrip("\\").strip() for line in DOCKERFILE.read_text().splitlines()]
    image = dict(line.removeprefix("ENV ").split("=", 1) for line in lines if "=" in line)
    wanted = system_env()
    assert wanted
    assert {k: v for k, v in image.items() if k in wanted} == wanted
