"""Prior sets, the model registry and twins that keep the prior set they were created with."""

from __future__ import annotations

import pytest

from twin import errors, ports
from twin.assimilation.state import TwinState
from twin.domain import events as E
from twin.domain.specs import Scenario
from twin.model.parameters import PopulationParameters
from twin.model.priors import BUILTIN, BUILTIN_VERSION, LITERATURE, SHIPPED, PriorSet, current
from twin.service.host import HostPorts, TwinHost
from twin.service.priors import DocumentPriorRegistry, PriorSetRecord
from twin.settings import HostSettings
from twin.testing import fakes

FITTED = {"pi_mean": 3.5, "e_max": 2.5, "h10": 0.004, "h01": 0.002}


def _record(version: str) -> PriorSetRecord:
    return PriorSetRecord(
        version=version, overrides=FITTED, estimator="smm", created_at="2026-11-29T00:00:00Z"
    )


def test_a_prior_set_overrides_only_fitted_parameters_with_positive_values():
    params = PriorSet("v1", FITTED).parameters()
    assert params.pi_mean == 3.5 and params.h01 == 0.002
    assert params.kappa_s == PopulationParameters().kappa_s
    assert BUILTIN.parameters() == PopulationParameters()
    with pytest.raises(errors.InvalidInputError, match="not a fitted parameter"):
        PriorSet("v1", {"kappa_s": 0.5})
    with pytest.raises(errors.ObservationRangeError):
        PriorSet("v1", {"h10": -1.0})
    with pytest.raises(errors.ObservationRangeError):
        PriorSet("bad version!", {})


async def test_the_registry_keeps_immutable_versions_and_an_active_pointer():
    registry = DocumentPriorRegistry(fakes.MemoryDocumentStore())
    # Until another is activated, new twins take the shipped joint fit.
    assert (await registry.active()) == LITERATURE
    await registry.save(_record("calib-1"))
    with pytest.raises(errors.InvalidInputError, match="already exists"):
        await registry.save(_record("calib-1"))
    for shipped in SHIPPED:
        with pytest.raises(errors.InvalidInputError, match="already exists"):
            await registry.save(_record(shipped))
        assert await registry.get(shipped) == SHIPPED[shipped]
    with pytest.raises(errors.NotFoundError):
        await registry.activate("calib-2")
    await registry.activate("calib-1")
    assert (await registry.active()).overrides == FITTED
    assert (await registry.record("calib-1")).estimator == "smm"


async def test_new_twins_take_the_active_set_and_existing_twins_keep_theirs():
    documents = fakes.MemoryDocumentStore()
    registry = DocumentPriorRegistry(documents)
    stores = HostPorts(
        fakes.MemoryEventStore(), fakes.MemoryCheckpointStore(), fakes.PlainSealer(),
        priors=registry,
    )  # fmt: skip
    host = TwinHost(stores, settings=HostSettings(particles=200))
    await host.ingest("old", [ports.NewEvent("o1", 0.3, E.Phq9(18))])
    await host.passivate("old")
    await registry.save(_record("calib-1"))
    await registry.activate("calib-1")
    await host.ingest("new", [ports.NewEvent("n1", 0.3, E.Phq9(18))])
    await host.ingest("old", [ports.NewEvent("o2", 7.3, E.Phq9(16))])
    new, old = await host.state("new"), await host.state("old")
    assert new.prior_version == "calib-1" and old.prior_version == LITERATURE.version
    assert TwinState.from_bytes(new.to_bytes()).prior_version == "calib-1"
    # The new twin's particles were drawn from the fitted prior (care effect mean 3.5, not 5).
    fitted = PriorSet("calib-1", FITTED).parameters()
    reference = TwinHost(
        HostPorts(fakes.MemoryEventStore(), fakes.MemoryCheckpointStore(), fakes.PlainSealer()),
        settings=HostSettings(particles=200),
        params=fitted,
    )
    await reference.ingest("new", [ports.NewEvent("n1", 0.3, E.Phq9(18))])
    assert (await reference.state("new")).particles.tobytes() == new.particles.tobytes()
    # Forecasts use the twin's own set too: the same numbers as a host built on that set.
    (mine,) = await host.forecast("new", [Scenario()], weeks=4)
    (theirs,) = await reference.forecast("new", [Scenario()], weeks=4)
    assert mine.phq9_quantiles == theirs.phq9_quantiles


async def test_a_twin_rebuilt_from_its_log_alone_keeps_its_prior_set():
    documents = fakes.MemoryDocumentStore()
    registry = DocumentPriorRegistry(documents)
    await registry.save(_record("calib-1"))
    await registry.activate("calib-1")
    checkpoints = fakes.MemoryCheckpointStore()
    stores = HostPorts(fakes.MemoryEventStore(), checkpoints, fakes.PlainSealer(), priors=registry)
    host = TwinHost(stores, settings=HostSettings(particles=200))
    await host.ingest("p", [ports.NewEvent("p1", 0.3, E.Phq9(18))])
    await host.passivate("p")
    before = await host.state("p")
    await host.passivate("p")
    await registry.activate(BUILTIN_VERSION)  # a rollback after the twin was created
    await checkpoints.delete_all("p")  # every checkpoint lost: the log rebuilds the twin
    rebuilt = await host.state("p")
    assert rebuilt.prior_version == "calib-1"
    assert rebuilt.to_bytes() == before.to_bytes()
    assert (await registry.for_patient("brand-new")).version == BUILTIN_VERSION


def test_the_current_model_is_the_shipped_joint_fit_and_builtin_is_unchanged():
    assert current() == LITERATURE.parameters() != PopulationParameters()
    assert BUILTIN.parameters() == PopulationParameters()
    # A host without a registry takes its configured parameters; a twin of the joint fit
    # resolves to the shipped set's parameters without one too.
    assert LITERATURE.overrides


@pytest.mark.parametrize(
    ("name", "value"),
    [("p_anx_acute", 1.0), ("p_anx_chronic", 1.5), ("chronic_share", 0.0),
     ("hamd_care_share", -0.1), ("h10", 0.0), ("rec_chronic", float("nan")),
     ("m_stop", 0.5)],
)  # fmt: skip
def test_prior_sets_refuse_values_outside_each_parameters_domain(name, value):
    with pytest.raises(errors.ObservationRangeError):
        PriorSet("v1", {name: value})


def test_a_rater_share_of_zero_is_the_self_report_view_and_allowed():
    assert PriorSet("v1", {"hamd_care_share": 0.0}).parameters().hamd_care_share == 0.0
