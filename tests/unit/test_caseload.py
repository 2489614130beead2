"""The caseload's order and keyset pages (pure functions, no stores)."""

from __future__ import annotations

import random
from typing import get_args

import pytest

from twin import errors, ports
from twin.schemas import CaseloadSort
from twin.service.caseload import CaseloadQuery, decode_cursor, encode_cursor, page


def _entry(pid: str, rng: random.Random) -> ports.IndexEntry:
    severity = rng.choice([5.0, 12.5, rng.uniform(0, 27)])  # ties on purpose
    return ports.IndexEntry(
        patient_id=pid, last_seq=1, day=3, severity_mean=severity, severity_sd=1.0,
        p_episode=0.5, p_severe=rng.choice([0.1, rng.random()]), alert_flags=(),
        updated_at=rng.choice([1e9, 1e9 + rng.random()]),
    )  # fmt: skip


def _walk(ids: list[str], summaries: dict[str, ports.IndexEntry], **kw: object) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        chosen, after = page(ids, summaries, CaseloadQuery(after=after, **kw))  # type: ignore[arg-type]
        seen.extend(chosen)
        if after is None:
            return seen


@pytest.mark.parametrize("sort", get_args(CaseloadSort))
@pytest.mark.parametrize("seed", range(5))
def test_pages_of_any_size_concatenate_to_the_whole_order(sort: str, seed: int) -> None:
    rng = random.Random(seed)
    ids = [f"p{i:03d}" for i in range(40)]
    summaries = {pid: _entry(pid, rng) for pid in ids if rng.random() < 0.8}
    (whole, rest) = page(ids, summaries, CaseloadQuery(sort=sort, limit=100))  # type: ignore[arg-type]
    assert rest is None and sorted(whole) == ids
    for size in (1, 3, 7, 40):
        assert _walk(ids, summaries, sort=sort, limit=size) == whole
    # Patients without a summary come last, whichever the direction.
    missing = [pid for pid in whole if pid not in summaries]
    if sort != "patient_id":
        assert whole[len(whole) - len(missing) :] == sorted(missing)
    if sort == "-severity":
        keys = [summaries[p].severity_mean for p in whole if p in summaries]
        assert keys == sorted(keys, reverse=True)


def test_a_filter_on_the_summary_leaves_out_patients_without_one() -> None:
    rng = random.Random(1)
    summaries = {"a": _entry("a", rng)}
    assert page(["a", "b"], summaries, CaseloadQuery())[0] == ["a", "b"]
    assert page(["a", "b"], summaries, CaseloadQuery(min_severity=0.0))[0] == ["a"]


def test_a_page_continues_after_a_row_that_left() -> None:
    rng = random.Random(2)
    ids = ["a", "b", "c", "d"]
    summaries = {pid: _entry(pid, rng) for pid in ids}
    first, after = page(ids, summaries, CaseloadQuery(sort="patient_id", limit=2))
    assert first == ["a", "b"] and after is not None
    # "b" was erased between the pages: the next page still starts after it.
    rest, _ = page(["a", "c", "d"], summaries, CaseloadQuery(sort="patient_id", after=after))
    assert rest == ["c", "d"]


@pytest.mark.parametrize(
    "text",
    ["", "!!!", "bm90LWpzb24", encode_cursor(("-severity", None, "x"))[:-2], "A" * 300,
     "WyItc2V2ZXJpdHkiLHRydWUsIngiXQ", "WyItc2V2ZXJpdHkiLDEsMl0"],
)  # fmt: skip
def test_a_forged_cursor_is_refused(text: str) -> None:
    with pytest.raises(errors.InvalidInputError):
        decode_cursor(text, "-severity")


def test_a_cursor_round_trips_and_is_bound_to_its_order() -> None:
    cursor = ("-p_severe", 0.25, "p7")
    assert decode_cursor(encode_cursor(cursor), "-p_severe") == cursor
    with pytest.raises(errors.InvalidInputError, match="another sort order"):
        decode_cursor(encode_cursor(cursor), "p_severe")
