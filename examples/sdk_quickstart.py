"""The researcher SDK in five steps, against a running platform (`make up`).

Run `make up` in one terminal; it prints a clinician token for the demo care team. Then:

    NOVAMIND_TOKEN=<clinician token> .venv/bin/python examples/sdk_quickstart.py

It registers a patient, sends two weeks of observations and a prescription, reads the twin,
forecasts 12 weeks (saved as forecast.png), compares two scenarios and replays the change feed.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta

from twin.client import Client, observation
from twin.client.frames import events_frame, forecast_frame
from twin.client.plot import plot_forecast
from twin.domain import events
from twin.domain.specs import Scenario, ScenarioDose


def main() -> int:
    """Run the walkthrough; returns the exit code."""
    url = os.environ.get("NOVAMIND_URL", "http://127.0.0.1:8000")
    token = os.environ.get("NOVAMIND_TOKEN")
    if not token:
        print("set NOVAMIND_TOKEN to a clinician token (printed by `make up`)", file=sys.stderr)
        return 2
    # Enrolled two weeks ago at 09:00 UTC: day 0 of the twin. Events are sent at the instants
    # they happened (any time zone); the twin places them on its days.
    enrolled = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    enrolled -= timedelta(days=15)

    def at(day: float) -> datetime:
        return enrolled + timedelta(days=day)

    with Client(url, token=token) as api:
        pid = api.create_patient(
            name="Example Patient", birth_date="1988-04-12", mrn="EX-0001", care_team="demo-team",
            enrolled_at=enrolled,
        )  # fmt: skip
        api.add_observations(pid, [observation(events.Phq9(16), effective=at(0))])
        api.add_interventions(
            pid, [observation(events.Prescription("sertraline", 50), effective=at(0.5))]
        )
        api.add_observations(
            pid,
            [observation(events.SleepDuration(6.0), effective=at(d)) for d in range(1, 14)]
            + [observation(events.Phq9(13), effective=at(14))],
        )
        twin = api.twin(pid)
        print(f"severity {twin.severity_mean:.1f} ± {twin.severity_sd:.1f} PHQ-9 points")
        print(f"as of {twin.as_of} (twin day {twin.day})")
        forecast = api.forecast(pid, weeks=12)
        median = forecast_frame(forecast).query("quantile == 0.5")
        print(median[["week", "time", "phq9"]].to_string())
        ax = plot_forecast(forecast, observed=[(0.0, 16), (14.0, 13)])
        ax.figure.savefig("forecast.png", dpi=110)
        report = api.compare_scenarios(
            pid,
            title="dose increase",
            scenarios=[
                Scenario(name="stay on 50 mg"),
                Scenario(
                    name="100 mg", doses=[ScenarioDose(day=0, drug="sertraline", mg_per_day=100)]
                ),
            ],
        )
        change = report.contrasts[0].remission_risk_change
        print(f"P(remission) change with 100 mg by week: {change}")
        print(events_frame(api.events(pid)).tail())
    return 0


if __name__ == "__main__":
    sys.exit(main())
