import copy

import numpy as np
import pytest

from tests.builders import Log, twin
from twin import errors
from twin.assimilation import kernel
from twin.assimilation.state import new_twin
from twin.domain import events as E
from twin.model.dynamics import Row
from twin.model.virtual_patient import synthetic_patient


def _mixed_log(seed: int) -> list[E.Event]:
    """PHQ-9, EMA, wearables, a prescription and doses, sessions: every event kind."""
    patient = synthetic_patient(
        seed,
        days=20,
        phq9_every=3,
        ema_per_day=2,
        wearables=True,
        drug_name="escitalopram",
        mg_per_day=10.0,
        drug_from_day=4,
    )
    extra = Log(start_seq=len(patient.events) + 1)
    extra.add(20.5, E.TherapySession()).add(20.6, E.TherapySession("cbti"))
    extra.add(21.0, E.Gad7(9)).add(22.0, E.CareStatus(False)).phq9(23.0, 12)
    return patient.events + extra.events


def test_batched_equals_one_by_one_equals_chunks_bit_for_bit():
    logs = [_mixed_log(seed) for seed in range(5)]
    logs[3] = logs[3][:40]  # twins with different amounts of pending work
    batched = [new_twin(f"t{i}", n_particles=300) for i in range(5)]
    kernel.apply_events(batched, logs)
    for i, log in enumerate(logs):
        one_by_one = new_twin(f"t{i}", n_particles=300)
        kernel.apply_events_reference(one_by_one, log)
        chunked = new_twin(f"t{i}", n_particles=300)
        for start in range(0, len(log), 17):
            kernel.apply_events([chunked], [log[start : start + 17]])
        assert batched[i].to_bytes() == one_by_one.to_bytes() == chunked.to_bytes()


def test_batch_composition_does_not_change_a_twin():
    logs = [_mixed_log(seed) for seed in range(3)]
    alone = new_twin("t1", n_particles=200)
    kernel.apply_events([alone], [logs[1]])
    together = [new_twin(f"t{i}", n_particles=200) for i in range(3)]
    kernel.apply_events(together, logs)
    assert together[1].equals(alone)


def test_a_high_phq9_moves_the_posterior_up_and_a_low_one_down():
    high, low = twin(particles=1000), twin(particles=1000)
    prior = kernel.posterior_mean(high, Row.S)
    kernel.apply_events([high, low], [Log().phq9(0.5, 25).events, Log().phq9(0.5, 2).events])
    assert kernel.posterior_mean(high, Row.S) > prior + 3
    assert kernel.posterior_mean(low, Row.S) < prior - 3
    assert kernel.posterior_sd(high, Row.S) < kernel.posterior_sd(twin(particles=1000), Row.S)


def test_results_report_evidence_ess_and_resampling():
    state = twin(particles=400)
    results = kernel.apply_events(
        [state], [Log().phq9(0.5, 26).add(0.6, E.TherapySession()).events]
    )[0]
    first, second = results
    assert first.assimilated and first.log_evidence is not None and first.log_evidence < 0
    assert 0 < first.ess <= 400
    assert not second.assimilated and second.log_evidence is None


def test_events_out_of_order_are_refused_without_touching_the_twin():
    state = twin()
    kernel.apply_events([state], [Log().phq9(3.0, 10).events])
    before = state.to_bytes()
    with pytest.raises(errors.EventOrderError):
        kernel.apply_events([state], [Log(start_seq=2).phq9(2.0, 10).events])
    with pytest.raises(errors.InvalidInputError, match="not after"):
        kernel.apply_events([state], [Log(start_seq=1).phq9(4.0, 10).events])
    assert state.to_bytes() == before


def test_an_unknown_drug_is_refused_before_it_becomes_an_event():
    with pytest.raises(errors.ObservationRangeError, match=r"prescription\.drug"):
        E.Prescription("aspirin", 100.0)
    with pytest.raises(errors.ObservationRangeError, match=r"dose\.drug"):
        E.DoseTaken("x" * 1000, True)


def test_events_a_twin_cannot_apply_are_skipped_and_reported_not_raised():
    state, other = twin(), twin()
    before = state.to_bytes()
    dose = Log().add(0.0, E.DoseTaken("sertraline", True)).add(0.5, E.Phq9(12))
    # The other twin of the batch is not held up by this one's rejected event.
    done, done_other = kernel.apply_events([state, other], [dose.events, Log().phq9(0.5, 9).events])
    assert "without a prescription" in (done[0].rejected or "")
    assert done[1].rejected is None and done[1].assimilated  # the twin's next event applies
    assert done_other[0].assimilated and state.last_seq == 2
    log = (
        Log(start_seq=3)
        .add(1.0, E.Prescription("sertraline", 50.0))
        .add(1.1, E.Prescription("fluoxetine", 20.0))
    )
    kernel.apply_events([state], [log.events])
    kept = state.to_bytes()
    (third,) = kernel.apply_events(
        [state], [Log(start_seq=5).add(2.0, E.Prescription("duloxetine", 60.0)).events]
    )
    assert "two other drugs" in (third[0].rejected or "")
    assert state.last_seq == 5 and state.slots == ["sertraline", "fluoxetine"]
    assert state.to_bytes() != kept  # only its position in the log moved
    assert state.to_bytes() != before
    stop = (
        Log(start_seq=6)
        .add(2.0, E.Prescription("sertraline", 0.0))
        .add(2.1, E.Prescription("duloxetine", 60.0))
    )
    kernel.apply_events([state], [stop.events])
    assert state.slots == ["duloxetine", "fluoxetine"]


def test_drug_exposure_builds_up_when_doses_are_taken():
    state = twin(particles=200)
    log = Log().add(0.0, E.Prescription("sertraline", 100.0))
    for day in range(10):
        log.add(day + 0.5, E.DoseTaken("sertraline", True))
    log.phq9(10.2, 12)
    kernel.apply_events([state], [log.events])
    assert kernel.posterior_mean(state, Row.C0) == pytest.approx(2.0, rel=0.05)
    assert state.p_adherence == pytest.approx(18 / 20)


def test_wearables_alone_move_severity_only_a_little():
    """docs/model.md §5.4: 28 days of wearables alone cut the posterior SD of S by < 20%."""
    ratios = []
    for seed in range(4):
        patient = synthetic_patient(seed, days=28, phq9_every=0, wearables=True)
        state = new_twin(f"w{seed}", n_particles=1000)
        start = kernel.posterior_sd(state, Row.S)
        kernel.apply_events([state], [patient.events])
        assert state.baselines["steps"][0] == kernel.RUN_IN
        # Compare with the prior propagated over the same 28 days (no information).
        blank = new_twin(f"w{seed}", n_particles=1000)
        kernel.apply_events([blank], [[E.Event(1, 28.9, E.TherapySession())]])
        ratios.append(kernel.posterior_sd(state, Row.S) / kernel.posterior_sd(blank, Row.S))
        assert start > 0
    assert np.mean(ratios) > 0.8


def test_deepcopy_and_equality_helpers():
    state = twin()
    assert copy.deepcopy(state).equals(state)


def test_a_long_gap_advances_the_twin_in_bounded_memory():
    import tracemalloc

    from twin.domain.events import MAX_EVENT_GAP_DAYS

    state = new_twin("far", n_particles=2000)
    kernel.apply_events([state], [[E.Event(1, 0.0, E.Phq9(15))]])
    tracemalloc.start()
    try:
        kernel.apply_events([state], [[E.Event(2, MAX_EVENT_GAP_DAYS, E.Phq9(6))]])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state.day == int(MAX_EVENT_GAP_DAYS)
    # All ten years' draws at once were 3,653 days x 6 float32 x 2,000 particles = 175 MB.
    assert peak < 40e6


def test_the_domain_and_the_model_know_the_same_drugs():
    from twin.domain.drugs import DRUGS

    assert set(DRUGS) == E.DRUG_NAMES


def test_a_switch_takes_the_same_slot_applied_at_once_or_one_event_at_a_time():
    log = (
        Log()
        .add(0.0, E.Prescription("sertraline", 50.0))
        .add(0.1, E.Prescription("fluoxetine", 20.0))
        .phq9(1.0, 14)
        .add(30.0, E.Prescription("fluoxetine", 0.0))  # the long half-life stopped first
        .add(40.0, E.Prescription("sertraline", 0.0))
        .phq9(41.0, 12)
        .add(41.5, E.Prescription("duloxetine", 60.0))  # both stopped: the least exposed slot
        .phq9(60.0, 10)
    )
    batched, stepwise = twin(particles=200), twin(particles=200)
    kernel.apply_events([batched], [log.events])
    for event in log.events:
        kernel.apply_events([stepwise], [[event]])
    # The least-exposed stopped slot is judged on the particles as they are at that event.
    assert batched.slots == stepwise.slots
    assert batched.to_bytes() == stepwise.to_bytes()


def test_a_stop_of_a_drug_never_prescribed_is_rejected_with_that_reason():
    state = twin()
    (done,) = kernel.apply_events(
        [state], [Log().add(0.0, E.Prescription("sertraline", 0.0)).events]
    )
    assert done[0].rejected == "stop of sertraline, which is not prescribed"
    assert state.record_start == 0.0  # the record starts with its first event all the same


def test_a_stored_event_naming_a_drug_no_longer_known_is_read_and_rejected_not_fatal():
    from twin.domain import codec

    stored = codec.decode(
        {"type": "prescription", "drug": "aspirin", "mg_per_day": 100.0}, stored=True
    )
    assert stored.drug == "aspirin"
    state = twin()
    log = Log().add(0.0, stored).add(1.0, E.Phq9(12))
    (done,) = kernel.apply_events([state], [log.events])
    assert "aspirin" in (done[0].rejected or "") and done[1].assimilated
