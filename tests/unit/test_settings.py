import pickle

import pytest
from pydantic import ValidationError

from twin.settings import (
    AuthSettings,
    HostSettings,
    HostTuning,
    RaySettings,
    ServeSettings,
    StoreSettings,
    TelemetrySettings,
    TwinSettings,
    WorkloadSettings,
)

CONCERNS = (
    HostTuning,
    RaySettings,
    StoreSettings,
    AuthSettings,
    ServeSettings,
    WorkloadSettings,
    TelemetrySettings,
)
# What belongs to the process as a whole rather than to one concern.
OWN = {"environment", "withheld", "config"}


def test_every_setting_belongs_to_exactly_one_concern():
    owners: dict[str, list[str]] = {}
    for concern in CONCERNS:
        for name in concern.model_fields:
            owners.setdefault(name, []).append(concern.__name__)

    assert {name: o for name, o in owners.items() if len(o) > 1} == {}
    assert set(TwinSettings.model_fields) == set(owners) | OWN


def test_the_host_gets_its_own_part_and_nothing_else(monkeypatch, tmp_path):
    monkeypatch.setenv("NOVAMIND_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("NOVAMIND_PARTICLES", "333")  # flat names, as every manifest writes them
    settings = TwinSettings(jwt_secret="not for a host", max_active_twins=7)

    host = settings.host

    assert type(host) is HostSettings
    assert not isinstance(settings, HostSettings)  # the whole, secrets and all, is never one
    assert host == HostSettings(particles=333, max_active_twins=7)
    assert "not for a host" not in repr(pickle.loads(pickle.dumps(host)).model_dump())


def test_a_misspelt_host_setting_is_refused():
    with pytest.raises(ValidationError):
        HostSettings(particle=300)


@pytest.mark.parametrize(
    ("field", "value"),
    [("particles", 99), ("particles", 100_001), ("checkpoint_every_events", 0),
     ("checkpoint_every_s", 0.0), ("max_concurrent_activations", 0)],
)  # fmt: skip
def test_a_concern_keeps_its_bounds_wherever_it_is_built(field, value):
    with pytest.raises(ValidationError):
        HostSettings(**{field: value})
    with pytest.raises(ValidationError):
        TwinSettings(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [("api_upscale_delay_s", -1.0), ("api_upscale_delay_s", 3601.0),
     ("api_downscale_delay_s", -1.0), ("api_downscale_delay_s", 86_401.0),
     ("api_autoscaling_look_back_s", 10.0), ("api_autoscaling_look_back_s", 3601.0)],
)  # fmt: skip
def test_how_fast_the_api_scales_is_bounded(field, value):
    # A look-back of Serve's 10 s metrics interval or less is refused here, not warned about
    # by Serve at deploy time.
    with pytest.raises(ValidationError):
        ServeSettings(**{field: value})
    with pytest.raises(ValidationError):
        TwinSettings(**{field: value})


def test_how_fast_the_api_scales_defaults_to_serves_own_timings():
    settings = ServeSettings()
    assert (
        settings.api_upscale_delay_s,
        settings.api_downscale_delay_s,
        settings.api_autoscaling_look_back_s,
    ) == (30.0, 600.0, 30.0)


@pytest.mark.parametrize("value", [-0.5, 5.5, float("nan")])
def test_the_checkpoints_of_a_stop_fit_in_its_10_s(value):
    # The rest of a stop takes about 2 s and it is forced 9 s after the signal.
    with pytest.raises(ValidationError):
        RaySettings(stop_checkpoint_s=value)
    with pytest.raises(ValidationError):
        TwinSettings(stop_checkpoint_s=value)
    assert RaySettings(stop_checkpoint_s=5).stop_checkpoint_s == 5


@pytest.mark.parametrize(
    "value", ["ftp://api.example.org", "api.example.org", "https://", "https://a b", "https://x?q"]
)
def test_the_public_base_url_is_an_http_url_without_a_query(value):
    with pytest.raises(ValidationError):
        ServeSettings(public_base_url=value)
    assert ServeSettings(public_base_url="https://api.example.org/novamind").public_base_url


@pytest.mark.parametrize("hours", [0, -1, 24 * 30 + 1])
def test_how_long_fhir_exports_are_kept_is_bounded(hours):
    with pytest.raises(ValidationError):
        WorkloadSettings(fhir_export_ttl_hours=hours)
    assert WorkloadSettings().fhir_export_ttl_hours == 24.0
