import subprocess
import sys

import pytest

import twin
from twin.model import cohort


def test_cohort_api_is_exported_from_the_package():
    assert twin.__all__ == ["CohortResult", "CohortSpec", "DoseChange", "simulate_cohort"]
    for name in twin.__all__:
        assert getattr(twin, name) is getattr(cohort, name)


def test_importing_twin_loads_nothing_heavy():
    code = (
        "import sys, twin; print(sorted({'numpy', 'scipy', 'pydantic', 'ray'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="not_a_name"):
        _ = twin.not_a_name  # type: ignore[attr-defined]
