"""A stored data key that does not open is never reported as the patient's erasure.

``DataKeyDamagedError`` is a ``KeyAccessError`` (what passes over one patient still passes over
it), but every place that tells a client or an operator why a patient was left out says which
of the two it was.
"""

from __future__ import annotations

import pytest

from deployments.pipelines import fhir_export, ingest
from twin import errors
from twin.domain.patients import DATA_KEY_DAMAGED, ERASED


def test_a_fhir_export_says_a_damaged_key_is_no_erasure():
    damaged = fhir_export._why(errors.DataKeyDamagedError(DATA_KEY_DAMAGED))
    assert damaged == DATA_KEY_DAMAGED
    assert "erased" not in damaged
    assert "erased" in fhir_export._why(errors.KeyAccessError(ERASED))


def test_bulk_ingest_quarantines_with_the_reason_that_applies():
    assert ingest._unopened(errors.DataKeyDamagedError(DATA_KEY_DAMAGED)) == (
        f"patient: {DATA_KEY_DAMAGED}"
    )
    assert ingest._unopened(errors.KeyAccessError(ERASED)) == "patient: unknown or erased"


@pytest.mark.parametrize("cls", [errors.DataKeyDamagedError, errors.KeyAccessError])
def test_the_damaged_key_error_is_still_one_a_listing_passes_over(cls):
    with pytest.raises(errors.KeyAccessError):
        raise cls(DATA_KEY_DAMAGED)
