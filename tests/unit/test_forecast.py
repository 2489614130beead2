import numpy as np
import pytest
from pydantic import ValidationError

from tests.builders import Log, depressed_twin, twin
from twin import errors
from twin.assimilation import kernel
from twin.assimilation.state import FORECAST_SALT
from twin.domain import events as E
from twin.domain.specs import Scenario, ScenarioDose
from twin.forecast import engine
from twin.forecast.summary import QUANTILES, compare, forecast

SERTRALINE = Scenario(
    name="sertraline 100", doses=[ScenarioDose(day=0, drug="sertraline", mg_per_day=100.0)]
)


@pytest.fixture(scope="module")
def depressed():
    return depressed_twin()


def test_forecast_shape_ranges_and_metadata(depressed):
    fc = forecast(depressed, weeks=26)
    assert fc.weeks == tuple(range(1, 27))
    for q in fc.phq9_quantiles:
        assert list(q) == sorted(q) and q[0] >= 0 and q[-1] <= 27
    for q in fc.gad7_quantiles:
        assert q[0] >= 0 and q[-1] <= 21
    assert (
        set(fc.remission) == {8, 12}
        and set(fc.response) == {8, 12}
        and set(fc.deterioration) == {4, 8}
    )
    for prob in (*fc.remission.values(), *fc.response.values(), *fc.deterioration.values()):
        assert prob.value is not None and 0.0 <= prob.value <= 1.0 and prob.mc_se is not None
    assert fc.model_version.startswith("novamind-twin/")
    assert fc.last_seq == 3 and fc.particles == 1000
    assert fc.days_since["Phq9"] == 0.0
    assert len(QUANTILES) == len(fc.phq9_quantiles[0])


def test_forecast_is_reproducible_and_does_not_touch_the_twin(depressed):
    before = depressed.to_bytes()
    assert forecast(depressed, SERTRALINE) == forecast(depressed, SERTRALINE)
    assert depressed.to_bytes() == before


def test_without_questionnaires_probabilities_say_why():
    fc = forecast(twin("fresh"), weeks=8)
    assert fc.response[8].value is None and fc.response[8].reason == "no baseline PHQ-9 observed"
    assert fc.deterioration[4].value is None


def test_drug_scenario_improves_on_no_drug_on_average(depressed):
    _, _, contrast = compare(depressed, Scenario(name="none"), SERTRALINE, weeks=12)
    assert contrast.mean_difference[-1] < -0.5
    assert contrast.remission_risk_change[12] > 0.0
    assert 0.0 <= contrast.p_b_better_by_5[-1] <= 1.0


def test_identical_scenarios_have_zero_paired_difference(depressed):
    _, _, contrast = compare(depressed, Scenario(name="a"), Scenario(name="b"), weeks=4)
    assert contrast.mean_difference == (0.0, 0.0, 0.0, 0.0)


def test_common_random_numbers_lower_the_variance_of_differences(depressed):
    paired = engine.simulate_scenarios([depressed], [[Scenario(), SERTRALINE]], weeks=12)[0]
    crn = (paired[1].phq9 - paired[0].phq9)[-1]
    # The same contrast with independent randomness for B: a different forecast stream.
    other = depressed.__class__.from_bytes(depressed.to_bytes())
    other.last_seq += 1  # shifts both the resampling and the forecast keys
    independent = engine.simulate_scenarios([other], [[SERTRALINE]], weeks=12)[0][0]
    assert FORECAST_SALT
    assert np.var(crn) < 0.5 * np.var(independent.phq9[-1] - paired[0].phq9[-1])


def test_usual_care_persistence_stops_drugs_and_weakens_the_effect(depressed):
    persistent = SERTRALINE
    usual = SERTRALINE.model_copy(update={"name": "usual", "persistence": "usual_care"})
    draws = engine.simulate_scenarios([depressed], [[Scenario(), persistent, usual]], weeks=12)[0]
    means = [d.phq9[-1].mean() for d in draws]
    assert means[1] < means[2] <= means[0] + 0.3


def test_batched_forecasts_equal_single_ones(depressed):
    other = twin("other", particles=1000)
    batched = engine.simulate_scenarios(
        [depressed, other], [[SERTRALINE], [Scenario(), SERTRALINE]], weeks=6
    )
    single = engine.simulate_scenarios([other], [[Scenario(), SERTRALINE]], weeks=6)[0]
    np.testing.assert_array_equal(batched[1][1].phq9, single[1].phq9)
    np.testing.assert_array_equal(
        batched[0][0].severity,
        engine.simulate_scenarios([depressed], [[SERTRALINE]], weeks=6)[0][0].severity,
    )


def test_twins_with_other_known_inputs_keep_their_own_plans_in_a_batch(depressed):
    """Plans are shared between twins with equal known inputs only (a regimen differs here)."""
    treated = twin("treated", particles=1000)
    log = Log().phq9(0.5, 18).add(0.6, E.Prescription("sertraline", 100.0)).phq9(7.5, 17)
    kernel.apply_events([treated], [log.events])
    alike = twin("alike", particles=1000)
    kernel.apply_events([alike], [Log().phq9(0.5, 18).phq9(7.5, 17).events])
    usual = Scenario(name="as is")
    batched = engine.simulate_scenarios([treated, alike], [[usual], [usual]], weeks=4)
    for state, draws in zip([treated, alike], batched, strict=True):
        alone = engine.simulate_scenarios([state], [[usual]], weeks=4)[0][0]
        np.testing.assert_array_equal(draws[0].severity, alone.severity)
    assert treated.prescribed_mg != alike.prescribed_mg


@pytest.mark.parametrize("weeks", [0, 27])
def test_horizon_is_validated(depressed, weeks):
    with pytest.raises(errors.ObservationRangeError, match="weeks"):
        forecast(depressed, weeks=weeks)


def test_scenario_validation_is_explicit():
    with pytest.raises(ValidationError, match="unknown drug"):
        ScenarioDose(day=0, drug="aspirin", mg_per_day=10.0)
    with pytest.raises(ValidationError):
        Scenario(therapy_session_days=[-1])
    with pytest.raises(ValidationError):
        Scenario(adherence=1.5)
