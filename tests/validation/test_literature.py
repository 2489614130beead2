"""The literature battery of docs/model.md §10, every target with its pass band.

20,000 simulated patients per arm keep Monte-Carlo error small against each band (a share near
0.5 has SE 0.0035; an SMD ~0.3 has SE ~0.01).
"""

import pytest

from twin.model import validation

CASES = [
    pytest.param(group, index, id=f"{group}-{index}")
    for group in validation.BATTERY
    for index in range(len(validation.run_target(group, n=200)))
]


@pytest.fixture(scope="module")
def results():
    return {group: validation.run_target(group) for group in validation.BATTERY}


@pytest.mark.slow
@pytest.mark.parametrize(("group", "index"), CASES)
def test_target_within_published_band(results, group, index):
    r = results[group][index]
    assert r.passed, (
        f"{r.target} {r.quantity} = {r.value:.3f}, band [{r.low}, {r.high}] ({r.source})"
    )
