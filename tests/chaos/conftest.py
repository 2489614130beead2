"""One multi-node cluster for the chaos tests of a module (starting one takes about 30 s).

Module-scoped, not session-scoped: the test process is the cluster's driver, and the suites
that run after this one start Ray clusters of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray")

from tests.chaos.cluster import ChaosCluster, running_cluster
from tests.servers import postgres_available


@pytest.fixture(scope="module")
def chaos_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosCluster]:
    if not postgres_available():
        pytest.skip("PostgreSQL server binaries are not installed")
    root: Path = tmp_path_factory.mktemp("chaos")
    with running_cluster(root) as cluster:
        yield cluster
