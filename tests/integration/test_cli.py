"""The ``novamind`` CLI: tokens from the local secret, migrations, audit verification."""

from __future__ import annotations

import sqlite3

from typer.testing import CliRunner

from deployments.bootstrap import token_verifier
from deployments.ops.cli import app
from twin.settings import TwinSettings


def test_token_migrate_and_audit_verify(tmp_path, monkeypatch):
    monkeypatch.setenv("NOVAMIND_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    minted = runner.invoke(
        app, ["token", "--role", "clinician", "--subject", "dr-cli", "--care-team", "t1"]
    )
    assert minted.exit_code == 0, minted.output
    who = token_verifier(TwinSettings()).verify(minted.output.strip())
    assert (who.subject, who.role, who.care_team) == ("dr-cli", "clinician", ("t1",))
    assert runner.invoke(app, ["token", "--role", "superuser"]).exit_code != 0
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    intact = runner.invoke(app, ["audit", "verify"])
    assert intact.exit_code == 0 and "intact" in intact.output
    # An entry written behind the application's back breaks the chain.
    with sqlite3.connect(tmp_path / "novamind.db") as db:
        db.execute(
            "INSERT INTO audit_log (seq, record, prev_hash, hash) VALUES (1, '{}', 'x', 'y')"
        )
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1 and "BROKEN" in broken.output


def test_ingest_refuses_bad_arguments_before_starting_anything(tmp_path):
    runner = CliRunner()
    common = ["ingest", str(tmp_path / "x.ndjson"), "--out", str(tmp_path / "out")]
    bad_format = runner.invoke(app, [*common, "--format", "xml", "--origin", "2024-01-01"])
    assert bad_format.exit_code == 2 and "fhir-ndjson" in bad_format.output
    bad_origin = runner.invoke(app, [*common, "--format", "csv", "--origin", "last year"])
    assert bad_origin.exit_code == 2 and "ISO 8601" in bad_origin.output
    assert not (tmp_path / "out").exists()


def test_prior_sets_are_listed_and_activated(tmp_path, monkeypatch):
    import asyncio

    from deployments.stores import open_documents
    from twin.model.priors import LITERATURE
    from twin.service.priors import DocumentPriorRegistry, PriorSetRecord

    monkeypatch.setenv("NOVAMIND_DATA_DIR", str(tmp_path))

    async def register() -> None:
        async with open_documents(TwinSettings()) as documents:
            await DocumentPriorRegistry(documents).save(
                PriorSetRecord(version="calib-x", overrides={"h10": 0.004}, estimator="smm",
                               created_at="2026-11-29T00:00:00+00:00")
            )  # fmt: skip

    asyncio.run(register())
    runner = CliRunner()
    listed = runner.invoke(app, ["priors", "list"])
    assert listed.exit_code == 0 and "h10=0.004" in listed.output
    # Until another is activated, new twins take the shipped joint fit; builtin is listed too.
    assert f"* {LITERATURE.version}" in listed.output and "  builtin" in listed.output
    assert runner.invoke(app, ["priors", "activate", "calib-x"]).exit_code == 0
    assert "* calib-x" in runner.invoke(app, ["priors", "list"]).output
    missing = runner.invoke(app, ["priors", "activate", "calib-y"])
    assert missing.exit_code == 1 and "no prior set" in missing.output


def test_cohort_and_calibrate_refuse_bad_arguments_before_starting_anything(tmp_path):
    runner = CliRunner()
    (tmp_path / "run.json").write_text('{"scenarios": []}')
    bad = runner.invoke(app, ["cohort", str(tmp_path / "run.json"), "--out", str(tmp_path / "o")])
    assert bad.exit_code == 2 and "scenarios" in bad.output
    unselected = runner.invoke(app, ["calibrate"])
    assert unselected.exit_code == 2 and "--care-team" in unselected.output
    # Every number an operator gives has a range: past it, a usage error before any work.
    for args in (
        ["calibrate", "--care-team", "t", "--min-severity", "1e9"],
        ["calibrate", "--care-team", "t", "--min-severity", "nan"],
        ["calibrate", "--care-team", "t", "--n-sim", "100000000"],
        ["calibrate", "--care-team", "t", "--max-evaluations", "10000000"],
        ["calibrate", "--care-team", "t", "--limit", "10000000"],
        ["model", "fit", "--iterations", "1000000", "--workers", "1"],
        ["model", "fit", "--workers", "100000"],
        ["model", "targets", "--seed", str(2**70)],
        ["cohort", str(tmp_path / "run.json"), "--out", "o", "--workers", "100000"],
        ["ingest", "x", "--format", "csv", "--origin=2024-01-01", "--out=o", "--writers=0"],
        ["token", "--ttl", "99999999"],
    ):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2, (args, refused.output)


def test_model_targets_writes_every_target_with_its_value_and_band(tmp_path):
    out = tmp_path / "targets.md"
    result = CliRunner().invoke(
        app, ["model", "targets", "--out", str(out), "--patients", "400", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    from twin.model import validation

    table = out.read_text().splitlines()
    rows = table[table.index("|---|---|---|---|---|---|") + 1 :]
    expected = validation.run_battery(n=400, seed=3)
    assert len(rows) == len(expected)
    # Each row carries the value the battery computes for the same cohorts.
    assert f"| {expected[0].value:.3f} |" in rows[0]
    assert "400 simulated patients per arm, seed 3" in out.read_text()
    assert CliRunner().invoke(app, ["model", "targets", "--patients", "10"]).exit_code == 2


def test_model_fit_writes_the_table_of_parameters_and_targets(tmp_path):
    out = tmp_path / "fit.md"
    result = CliRunner().invoke(
        app,
        ["model", "fit", "--out", str(out), "--patients", "500", "--iterations", "1",
         "--workers", "1", "--only", "pi_mean"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = out.read_text()
    assert "| pi_mean |" in table and "| T1 |" in table and "degrees of freedom" in table
    assert '"pi_mean"' in result.output
    bad = CliRunner().invoke(app, ["model", "fit", "--only", "kappa_s", "--out", str(out)])
    assert bad.exit_code == 2 and "only" in bad.output
