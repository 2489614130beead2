"""Cohort what-if: batch-split invariance, exact tallies, common random numbers, synthetic twins."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from twin import errors
from twin.analytics import synthetic
from twin.analytics.whatif import CohortTwin, Tally, aggregate_rows, simulate_batch
from twin.domain.specs import Scenario, ScenarioDose
from twin.forecast.summary import compare_many
from twin.model.cohort import CohortSpec, DoseChange, maintenance_history_days
from twin.model.dynamics import Row
from twin.schemas import CohortRunIn

SPEC = CohortSpec(n_patients=70, days=14, seed=5, screen_phq9_min=10)
CARE = Scenario(name="care")
SERTRALINE = Scenario(
    name="sertraline", doses=[ScenarioDose(day=0, drug="sertraline", mg_per_day=100.0)]
)


@pytest.fixture(scope="module")
def twins() -> list[CohortTwin]:
    return [
        t
        for b in range(synthetic.blocks(SPEC))
        for t in synthetic.synthetic_twins(SPEC, b, particles=100)
    ]


def test_synthetic_blocks_cover_the_cohort_and_repeat_exactly(twins):
    assert len(twins) == 70 and synthetic.blocks(SPEC) == 2
    again = synthetic.synthetic_twins(SPEC, 1, particles=100)
    assert [t.pseudonym for t in again] == [t.pseudonym for t in twins[64:]]
    assert all(a.state.equals(b.state) for a, b in zip(again, twins[64:], strict=True))
    # Each twin has assimilated its history: three weekly PHQ-9 scores (days 0, 7, 14).
    assert all(t.state.day == 14 and len(t.state.phq9_history) == 3 for t in twins)
    with pytest.raises(errors.ObservationRangeError):
        synthetic.synthetic_twins(SPEC, 2, particles=100)


def test_any_split_of_the_cohort_gives_identical_rows_and_aggregate(twins):
    rows, tally = simulate_batch(twins, [CARE, SERTRALINE], weeks=6, seed=3)
    parts = [twins[:1], twins[1:30], twins[30:]]
    split = [simulate_batch(p, [CARE, SERTRALINE], weeks=6, seed=3) for p in parts]
    assert [r for rs, _ in split for r in rs] == rows
    merged = Tally.empty(["care", "sertraline"], 6)
    for _, t in reversed(split):
        merged = merged.merge(t)
    assert aggregate_rows(merged) == aggregate_rows(tally)
    assert Tally.from_dict(tally.to_dict()).to_dict() == tally.to_dict()


def test_rows_match_the_single_twin_forecast_with_the_same_random_numbers(twins):
    rows, _ = simulate_batch(twins[:3], [CARE, SERTRALINE], weeks=12)
    forecasts, contrasts = compare_many(twins[1].state, [CARE, SERTRALINE], weeks=12)
    care, drug = rows[2], rows[3]
    assert care["pseudonym"] == drug["pseudonym"] == twins[1].pseudonym
    assert care["remission_p"] == forecasts[0].remission[12].value
    assert drug["response_p"] == forecasts[1].response[12].value
    assert drug["remission_change"] == pytest.approx(contrasts[0].remission_risk_change[12])
    assert drug["diff_mean"] == pytest.approx(contrasts[0].mean_difference[-1])
    assert care["diff_mean"] is None
    # Days from the twin's own first event, never the origin-based day (a calendar date).
    assert "as_of_day" not in care
    start = twins[1].state.record_start
    assert start is not None
    assert care["as_of_record_day"] == twins[1].state.day - int(start) >= 0


def test_the_aggregate_is_the_mean_of_the_rows_and_identical_scenarios_do_not_differ(twins):
    same = Scenario(name="care again")
    rows, tally = simulate_batch(twins, [CARE, SERTRALINE, same], weeks=12)
    agg = {(r["scenario"], r["week"]): r for r in aggregate_rows(tally)}
    for name in ("care", "sertraline"):
        mine = [r["remission_p"] for r in rows if r["scenario"] == name]
        assert agg[(name, 12)]["remission_rate"] == pytest.approx(np.mean(mine))
        assert agg[(name, 12)]["patients"] == 70
    # Common random numbers: the same schedule under another name gives a zero contrast.
    again = agg[("care again", 12)]
    assert again["diff_mean"] == 0.0 and again["p_better_by_5"] == 0.0
    assert again["diff_q05"] == again["diff_q95"] == 0
    # The drug helps on average (docs/model.md §4.2: drug-placebo difference ~2 points).
    drug = agg[("sertraline", 12)]
    assert -4.0 < drug["diff_mean"] < -0.5 and drug["remission_change"] > 0
    assert drug["remission_se"] is not None and 0 < drug["remission_se"] < 0.1


def test_another_seed_draws_other_futures(twins):
    a, _ = simulate_batch(twins[:5], [CARE], weeks=4, seed=0)
    b, _ = simulate_batch(twins[:5], [CARE], weeks=4, seed=1)
    assert a != b


def test_bad_runs_are_refused(twins):
    with pytest.raises(errors.InvalidInputError, match="distinct"):
        simulate_batch(twins[:1], [CARE, Scenario(name="care")])
    with pytest.raises(errors.InvalidInputError, match="at least one"):
        simulate_batch(twins[:1], [])
    with pytest.raises(errors.InvalidInputError, match="different runs"):
        Tally.empty(["a"], 4).merge(Tally.empty(["a"], 5))
    with pytest.raises(errors.InvalidInputError, match="need 28 days"):
        synthetic.synthetic_twins(SPEC.model_copy(update={"start": "remitted"}), 0, particles=10)


def test_remitted_maintenance_cohort_relapses_more_when_the_drug_stops():
    maintenance = [DoseChange(day=0, drug="sertraline", mg_per_day=100.0)]
    spec = CohortSpec(n_patients=40, days=28, seed=9, start="remitted", regimen=maintenance)
    twins = synthetic.synthetic_twins(spec, 0, particles=300)
    # The twins learned the maintenance state from 4 weeks of history: in remission, on the drug.
    in_episode = np.mean([t.state.particles[Row.R].mean() for t in twins])
    exposure = np.mean([t.state.particles[Row.C0].mean() for t in twins])
    assert in_episode < 0.3 and exposure > 1.0  # 100 mg = 2 D_min at full adherence
    stop = Scenario(name="stop", doses=[ScenarioDose(day=0, drug="sertraline", mg_per_day=0.0)])
    rows, _ = simulate_batch(twins, [Scenario(name="continue"), stop], weeks=26)
    stopped = [r for r in rows if r["scenario"] == "stop"]
    assert np.mean([r["diff_mean"] for r in stopped]) > 0.5  # worse off the drug, paired
    assert np.mean([r["remission_change"] for r in stopped]) < 0.0


def test_a_remitted_cohort_needs_history_for_its_maintenance_drug():
    fluoxetine = [DoseChange(day=0, drug="fluoxetine", mg_per_day=20.0)]
    spec = CohortSpec(n_patients=5, days=30, start="remitted", regimen=fluoxetine)
    assert maintenance_history_days(spec) == 35  # five 7-day half-lives
    assert maintenance_history_days(SPEC) == 0
    with pytest.raises(ValidationError, match=r"synthetic\.days >= 35"):
        CohortRunIn(synthetic=spec, scenarios=[CARE])
    with pytest.raises(errors.InvalidInputError, match="need 35 days"):
        synthetic.synthetic_twins(spec, 0, particles=10)


def test_a_twin_a_scenario_cannot_apply_to_is_left_out_with_its_reason_not_the_batch():
    from tests.builders import Log, twin
    from twin.assimilation import kernel
    from twin.domain import events as E
    from twin.forecast.engine import scenario_refusal

    busy, free = twin("busy", particles=100), twin("free", particles=100)
    two = (
        Log()
        .add(0.0, E.Prescription("sertraline", 50.0))
        .add(0.1, E.Prescription("fluoxetine", 20.0))
    )
    kernel.apply_events([busy], [two.events])
    kernel.apply_events([free], [Log().phq9(0.1, 14).events])
    start = [
        Scenario(name="as now"),
        Scenario(name="add", doses=[ScenarioDose(day=0, drug="duloxetine", mg_per_day=60)]),
    ]
    assert "two other drugs" in (
        scenario_refusal(busy.state if hasattr(busy, "state") else busy, start) or ""
    )
    assert scenario_refusal(free, start) is None
    stop = ScenarioDose(day=0, drug="fluoxetine", mg_per_day=0)
    switch = [
        Scenario(name="switch", doses=[stop, ScenarioDose(day=0, drug="duloxetine", mg_per_day=60)])
    ]
    assert scenario_refusal(busy, switch) is None

    from deployments.pipelines import cohorts
    from twin import schemas

    run = schemas.CohortRunIn.model_validate(
        {"pseudonyms": ["rs_" + "0" * 24], "scenarios": [s.model_dump() for s in start], "weeks": 1}
    )
    table = cohorts._forecast(run, [CohortTwin("rs_busy", busy), CohortTwin("rs_free", free)], None)
    kinds = table["kind"].to_pylist()
    bodies = table["body"].to_pylist()
    assert kinds.count("row") == 2  # the free twin under both scenarios
    assert [b for k, b in zip(kinds, bodies, strict=True) if k == "skipped"] == [
        "scenario: scenario starts duloxetine while two other drugs are prescribed"
    ]


def _on_two_drugs(name: str):
    """A twin taking sertraline 50 mg and fluoxetine 20 mg."""
    from tests.builders import Log, twin
    from twin.assimilation import kernel
    from twin.domain import events as E

    state = twin(name, particles=100)
    two = (
        Log()
        .add(0.0, E.Prescription("sertraline", 50.0))
        .add(0.1, E.Prescription("fluoxetine", 20.0))
    )
    kernel.apply_events([state], [two.events])
    return state


def test_a_switch_later_in_the_horizon_keeps_the_old_drug_until_its_day():
    from twin.domain.drugs import drug
    from twin.forecast import engine
    from twin.model.parameters import PopulationParameters

    state = _on_two_drugs("switch")
    k = state.slots.index("fluoxetine")
    start = ScenarioDose(day=10, drug="duloxetine", mg_per_day=60)
    switch = Scenario(
        name="switch", doses=[start, ScenarioDose(day=10, drug="fluoxetine", mg_per_day=0)]
    )
    plan = engine._plan(state, switch, 20, PopulationParameters())
    assert plan.k_e[5, k] == pytest.approx(drug("fluoxetine").k_e)
    assert plan.dose_rel[5, k] == pytest.approx(20.0 / drug("fluoxetine").min_dose_mg)
    assert plan.k_e[12, k] == pytest.approx(drug("duloxetine").k_e)
    assert plan.dose_rel[12, k] == pytest.approx(1.0)


def test_a_scenario_that_stops_a_drug_the_twin_does_not_take_changes_nothing():
    from twin.forecast import engine
    from twin.model.parameters import PopulationParameters

    state = _on_two_drugs("two")
    stop = Scenario(name="stop", doses=[ScenarioDose(day=3, drug="duloxetine", mg_per_day=0)])
    assert engine.scenario_refusal(state, [stop]) is None
    params = PopulationParameters()
    same = engine._plan(state, Scenario(name="as now"), 10, params)
    plan = engine._plan(state, stop, 10, params)
    assert (plan.k_e == same.k_e).all() and (plan.dose_rel == same.dose_rel).all()
