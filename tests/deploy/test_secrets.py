"""No secret in the deployment code: checkov's secrets scan over the image, manifests and IaC."""

from __future__ import annotations

import shutil

from tests.deploy.conftest import ROOT, run_checkov


def test_no_secrets_in_dockerfile_manifests_or_terraform(tmp_path):
    tree = tmp_path / "deploy"
    for name in ("kuberay", "terraform"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns(".terraform*"))
    shutil.copy(ROOT / "Dockerfile", tree / "Dockerfile")
    report = run_checkov(tree, "secrets")
    # A clean scan reports only its summary (no "results").
    failed = [
        f"{c['check_id']} {c['file_path']}"
        for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert not failed and report.get("failed", report.get("summary", {}).get("failed")) == 0


def test_the_secrets_scan_does_find_a_planted_secret(tmp_path):
    (tmp_path / "leak.tf").write_text(
        'resource "aws_db_instance" "x" {\n  password = "Zk3v9QpL2xWm8RtY4bNc7HsD1fGj6"\n}\n'
        'variable "aws" {\n  default = "AKIAIOSFODNN7EXAMPLE"\n}\n'
    )
    report = run_checkov(tmp_path, "secrets")
    assert report["results"]["failed_checks"], report["summary"]
