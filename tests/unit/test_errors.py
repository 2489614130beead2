import inspect
import pickle

import pytest

from twin import errors

SAMPLE_ARGS = {
    errors.ObservationRangeError: ("phq9.total", 30, "integer 0..27"),
    errors.UnknownDrugError: ("aspirin", ("sertraline",)),
    errors.EventOrderError: (1.5, 2.0),
    errors.EventGapError: (5000.0, 10.0, 3653.0),
    errors.ModelVersionError: ("old", "new"),
    errors.RateLimitedError: (7,),
    errors.ConcurrencyLimitError: (30, "at most 2 open streams"),
    errors.OverloadedError: (1,),
    errors.VerificationRunningError: (60,),
    errors.ApiError: (418, "I'm a teapot", "short and stout"),
}

CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.TwinError)
]


def test_every_error_is_listed_and_rooted():
    assert set(errors.__all__) == {cls.__name__ for cls in CLASSES}
    assert all(issubclass(cls, errors.TwinError) for cls in CLASSES)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_pickles_with_its_message(cls):
    exc = cls(*SAMPLE_ARGS.get(cls, ("something went wrong",)))
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is cls
    assert str(clone) == str(exc)
    assert clone.args == exc.args


def test_invalid_input_is_a_value_error():
    assert issubclass(errors.ObservationRangeError, ValueError)
    assert "expected integer 0..27" in str(
        errors.ObservationRangeError("phq9.total", 30, "integer 0..27")
    )
