"""The literature battery of docs/model.md §10, every target with its pass band.

20,000 simulated patients per arm keep Monte-Carlo error small against each band (a share near
0.5 has SE 0.0035; an SMD ~0.3 has SE ~0.01).
"""

import pytest

from twin.model import validation

XFAIL = {
    ("T8", "untreated PHQ-9 < 10 at 12 mo"): (
        "the joint fit's untreated course is concave (acute episodes recover early, chronic ones "
        "stay): 0.27/0.38/0.46 below 10 at 3/6/12 months against Whiteford's pooled 0.23/0.32/"
        "0.53, whose rise from 6 to 12 months no course-class mixture reproduces together with "
        "NEMESIS and NESDA; at 12 months the model is 0.2 points under the band (docs/model.md §11)"
    ),
}

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
    reason = XFAIL.get((r.target, r.quantity))
    if reason is not None:
        pytest.xfail(reason) if not r.passed else pytest.fail(
            f"{r.target} now passes: remove the xfail"
        )
    assert r.passed, (
        f"{r.target} {r.quantity} = {r.value:.3f}, band [{r.low}, {r.high}] ({r.source})"
    )
