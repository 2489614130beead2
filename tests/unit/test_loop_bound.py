from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from deployments.pipelines.loop_bound import LoopBound


def _opener(log: list[str], *, fail: bool = False):
    @asynccontextmanager
    async def open_store() -> AsyncIterator[dict[str, int]]:
        if fail:
            raise ConnectionError("store down")
        log.append("open")
        try:
            yield {"rows": 3}
        finally:
            log.append("closed")

    return open_store()


def test_the_stores_stay_open_between_calls_and_close_once():
    log: list[str] = []
    bound = LoopBound(_opener(log))

    async def read() -> int:
        return bound.value["rows"]

    assert [bound.run(read()), bound.run(read())] == [3, 3]
    assert log == ["open"]
    bound.close()
    bound.close()
    assert log == ["open", "closed"]


def test_a_block_closes_them_even_when_it_fails():
    log: list[str] = []
    with pytest.raises(ValueError, match="job failed"), LoopBound(_opener(log)):
        raise ValueError("job failed")
    assert log == ["open", "closed"]


def test_an_opener_that_fails_raises_its_own_error():
    with pytest.raises(ConnectionError):
        LoopBound(_opener([], fail=True))


def test_an_actor_let_go_closes_its_stores():
    log: list[str] = []
    bound = LoopBound(_opener(log))
    del bound
    assert log == ["open", "closed"]
