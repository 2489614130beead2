import numpy as np
import pytest
from pydantic import ValidationError

from twin import CohortSpec, DoseChange, errors, simulate_cohort
from twin.model.cohort import stop_days
from twin.model.priors import current


def test_shapes_and_observation_days():
    r = simulate_cohort(CohortSpec(n_patients=50, days=30, observe_every_days=7))
    assert r.obs_days.tolist() == [0, 7, 14, 21, 28]
    assert r.phq9.shape == (50, 5) and r.phq9.dtype == np.int64
    assert r.severity.shape == (50, 31) and r.episode.shape == (50, 31)
    assert r.phq9.min() >= 0 and r.phq9.max() <= 27
    assert r.severity.min() >= 0 and r.severity.max() <= 27


def test_same_seed_same_cohort_and_different_seed_different():
    spec = CohortSpec(n_patients=100, days=14, seed=3)
    a, b = simulate_cohort(spec), simulate_cohort(spec)
    np.testing.assert_array_equal(a.phq9, b.phq9)
    c = simulate_cohort(spec.model_copy(update={"seed": 4}))
    assert not np.array_equal(a.phq9, c.phq9)


def test_screening_enrols_only_high_baselines():
    r = simulate_cohort(CohortSpec(n_patients=300, days=7, screen_phq9_min=20))
    assert r.phq9[:, 0].min() >= 20
    assert r.phq9.shape[0] == 300


def test_remitted_start_is_well():
    r = simulate_cohort(CohortSpec(n_patients=500, days=1, start="remitted"))
    assert not r.episode[:, 0].any()


def test_detailed_traces():
    r = simulate_cohort(CohortSpec(n_patients=10, days=5, detailed=True))
    assert r.anxiety is not None and r.anxiety.shape == (10, 6)
    assert r.gad7 is not None and r.gad7.max() <= 21
    assert r.params is not None and r.params.shape[1] == 10


@pytest.mark.parametrize(
    "kwargs",
    [
        {
            "regimen": [DoseChange(day=0, drug="sertraline", mg_per_day=50.0)] * 1
            + [{"day": 0, "drug": "aspirin", "mg_per_day": 1.0}]
        },
        {
            "regimen": [
                {"day": 0, "drug": d, "mg_per_day": 10.0}
                for d in ("sertraline", "fluoxetine", "duloxetine")
            ]
        },
        {"adherence": 1.2},
        {"n_patients": 0},
        {"therapy_session_days": [-3]},
        {"start": "relapsed"},
        {"unknown_field": 1},
    ],
)
def test_bad_specs_are_refused_with_a_clear_error(kwargs):
    with pytest.raises(ValidationError):
        CohortSpec(**{"n_patients": 10, "days": 10, **kwargs})


def test_drug_lowers_severity_on_average():
    base = CohortSpec(n_patients=3000, days=42, seed=1, screen_phq9_min=15)
    placebo = simulate_cohort(base)
    drug = simulate_cohort(
        base.model_copy(update={"regimen": [DoseChange(day=0, drug="sertraline", mg_per_day=50.0)]})
    )
    assert drug.severity[:, -1].mean() < placebo.severity[:, -1].mean() - 0.5


def test_a_screen_that_admits_too_few_patients_is_refused_not_run_for_hours():
    # Refused after 20 rounds by the projection, not after hours of screening.
    with pytest.raises(errors.InvalidInputError, match="screening rounds"):
        simulate_cohort(CohortSpec(n_patients=2_000_000, days=7, screen_phq9_min=27))


def test_usual_care_persistence_counts_from_the_first_dose():
    late = [DoseChange(day=30, drug="sertraline", mg_per_day=50.0)]
    spec = CohortSpec(n_patients=20_000, days=40, regimen=late, persistence="usual_care")
    stops = stop_days(spec, current(), np.random.default_rng(0))
    assert isinstance(stops, np.ndarray) and stops.min() >= 30.0
    # 42 % stop within 30 days of starting (Olfson et al. 2006).
    assert np.mean(stops < 60.0) == pytest.approx(0.42, abs=0.02)
    assert stop_days(spec.model_copy(update={"persistence": "as_scheduled"}), current(),
                     np.random.default_rng(0)) == float("inf")  # fmt: skip


def test_a_strict_screen_still_fills_a_small_cohort_whatever_the_seed():
    for seed in range(4):
        spec = CohortSpec(n_patients=1, days=0, seed=seed, screen_hamd17_min=30)
        assert simulate_cohort(spec).hamd17[0, 0] >= 30


def test_stopping_a_drug_raises_the_relapse_hazard_for_months_only_when_m_stop_says_so():
    import dataclasses

    sertraline = [DoseChange(day=0, drug="sertraline", mg_per_day=50.0)]
    stop = [*sertraline, DoseChange(day=1, drug="sertraline", mg_per_day=0.0)]

    def relapsed(m_stop: float, regimen: list[DoseChange], days: int, **extra) -> float:
        p = dataclasses.replace(current(), m_stop=m_stop)
        spec = CohortSpec(
            n_patients=6000, days=days, seed=3, start="remitted", regimen=regimen, **extra
        )
        return float(np.mean(simulate_cohort(spec, params=p).episode.any(axis=1)))

    never = relapsed(3.0, [], 90)
    # Without the term, stopping is no worse than never having taken the drug.
    assert relapsed(1.0, stop, 90) == pytest.approx(never, abs=0.02)
    # With it, the first three months after stopping bring clearly more relapses ...
    assert relapsed(3.0, stop, 90) > never + 0.03
    # ... and the excess fades: over two years it is a smaller share of all relapses.
    early = relapsed(3.0, stop, 90) / never
    late = relapsed(3.0, stop, 730) / relapsed(3.0, [], 730)
    assert late < early
    # Missed doses are not stopping: a patient who misses one dose in five, for a year, still
    # relapses less than one off the drug, and little more than one who takes every dose (a
    # drug with a short half-life dips further on a missed day).
    for drug, mg in (("sertraline", 50.0), ("venlafaxine", 75.0)):
        maintained = [DoseChange(day=0, drug=drug, mg_per_day=mg)]
        partial = relapsed(4.0, maintained, 365, adherence=0.8)
        assert partial < relapsed(4.0, [], 365) - 0.05
        assert partial < relapsed(4.0, maintained, 365) + 0.04
