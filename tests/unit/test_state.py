import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import Log, twin
from twin import errors
from twin.assimilation import kernel
from twin.assimilation.state import TwinState, new_twin
from twin.domain import events as E


def test_default_state_is_its_particles_and_weights_with_a_small_header():
    state = new_twin("p")
    arrays = state.particles.nbytes + state.log_weights.nbytes  # float32 rows, float64 weights
    assert len(state.to_bytes()) <= arrays + 2048
    # A checkpoint stays small enough to write per event: 2,000 particles of 25 rows and weights.
    assert len(state.to_bytes()) <= 220_000


@settings(max_examples=25, deadline=None)
@given(
    st.integers(10, 300),
    st.lists(st.tuples(st.integers(0, 27), st.floats(0.0, 3.0)), max_size=4),
    st.text(min_size=1, max_size=12),
)
def test_bytes_round_trip_is_exact(particles, observations, name):
    state = new_twin(name, n_particles=particles)
    log = Log()
    day = 0.0
    for total, gap in observations:
        day += gap
        log.phq9(day, total)
    log.add(day, E.Prescription("sertraline", 50.0)).add(day, E.DoseTaken("sertraline", False))
    kernel.apply_events([state], [log.events])
    data = state.to_bytes()
    again = TwinState.from_bytes(data)
    assert again.to_bytes() == data
    np.testing.assert_array_equal(again.particles, state.particles)
    np.testing.assert_array_equal(again.log_weights, state.log_weights)
    assert again.tracker == state.tracker
    assert again.taken_today == state.taken_today
    assert again.last_seq == state.last_seq


@pytest.mark.parametrize("data", [b"", b"XXXX", b"NMTW\x05\x00\x00\x00{bad}"])
def test_garbage_is_refused(data):
    with pytest.raises(errors.StateCorruptError):
        TwinState.from_bytes(data)


def test_truncated_state_is_refused():
    data = twin().to_bytes()
    with pytest.raises(errors.StateCorruptError):
        TwinState.from_bytes(data[:-8])


def test_other_model_version_is_refused():
    state = twin()
    state.model_version = "novamind-twin/0.1"
    with pytest.raises(errors.ModelVersionError):
        TwinState.from_bytes(state.to_bytes())


def test_new_twin_validates_particle_count():
    with pytest.raises(errors.ObservationRangeError):
        new_twin("p", n_particles=3)


def test_same_patient_same_prior_different_patient_different_prior():
    assert new_twin("a", n_particles=50).equals(new_twin("a", n_particles=50))
    assert not new_twin("a", n_particles=50).equals(new_twin("b", n_particles=50))
