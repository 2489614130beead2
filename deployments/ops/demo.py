"""`novamind demo`: a synthetic patient's twin on the durable runtime, without HTTP.

Embedded defaults: local Ray with TwinHost actors, the SQLite event log and an encrypted local
checkpoint folder in the data directory. A patient is simulated from the model's prior (in an
episode, sertraline 50 mg from week 2, weekly PHQ-9, three EMA beeps a day and daily wearables);
their events are ingested one week at a time through the runtime, which prints what the twin
believes; then it forecasts 12 weeks (fan chart printed and saved as a PNG) and compares two
treatment scenarios on the same posterior.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from deployments import ray_env
from deployments.host_ports import build_host_ports
from twin import ports
from twin.assimilation.state import TwinState
from twin.client.plot import SEVERITY_BANDS
from twin.domain import events
from twin.domain.specs import Scenario, ScenarioDose
from twin.forecast.summary import QUANTILES, Forecast, compare
from twin.model.virtual_patient import synthetic_patient
from twin.settings import TwinSettings


def _fan_text(fc: Forecast) -> str:
    lo, q25, med, q75, hi = (QUANTILES.index(q) for q in (0.10, 0.25, 0.50, 0.75, 0.90))
    lines = [f"  week   10%  25%  median  75%  90%   {'PHQ-9 0' + ' ' * 20 + '27'}"]
    for w, q in zip(fc.weeks, fc.phq9_quantiles, strict=True):
        bar = [" "] * 28
        for k in range(q[lo], q[hi] + 1):
            bar[k] = "-"
        for k in range(q[q25], q[q75] + 1):
            bar[k] = "="
        bar[q[med]] = "#"
        lines.append(
            f"  {w:4d}  {q[lo]:4d} {q[q25]:4d}  {q[med]:5d}  {q[q75]:4d} {q[hi]:4d}   "
            f"|{''.join(bar)}|"
        )
    return "\n".join(lines)


def _save_png(fc: Forecast, history: list[list[float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for low, high, label in SEVERITY_BANDS:
        ax.axhspan(
            low - 0.5,
            high + 0.5,
            alpha=0.07 + 0.03 * SEVERITY_BANDS.index((low, high, label)),
            color="tab:red",
        )
        ax.text(-7.6, (low + high) / 2, label, va="center", fontsize=7, color="dimgray")
    start = fc.as_of_day
    days = [start + 7 * w for w in fc.weeks]
    col = {q: [row[QUANTILES.index(q)] for row in fc.phq9_quantiles] for q in QUANTILES}
    ax.fill_between(days, col[0.10], col[0.90], color="tab:blue", alpha=0.2, label="80% interval")
    ax.fill_between(days, col[0.25], col[0.75], color="tab:blue", alpha=0.35, label="50% interval")
    ax.plot(days, col[0.50], color="tab:blue", label="median")
    ax.plot([d for d, _ in history], [y for _, y in history], "ko", label="observed PHQ-9")
    ax.set_xlim(-8, days[-1] + 2)
    ax.set_ylim(-0.5, 27.5)
    ax.set_xlabel("day")
    ax.set_ylabel("PHQ-9 (observable)")
    ax.set_title(f"Twin forecast: {fc.scenario} (model {fc.model_version})")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


async def _run(settings: TwinSettings) -> int:
    import ray  # the platform layer, only when the demo runs

    from actors.directory import RayTwinDirectory
    from actors.runtime import TwinRuntime

    out_dir = settings.data_dir / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    patient = synthetic_patient(
        11,
        days=56,
        phq9_every=7,
        ema_per_day=3,
        wearables=True,
        drug_name="sertraline",
        mg_per_day=50.0,
        drug_from_day=14,
        p_episode=1.0,
    )
    ray_env.connect(
        settings, num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    try:
        directory = RayTwinDirectory(settings, build_host_ports, settings.host)
        hosts = directory.start()
        runtime = TwinRuntime(directory)
        print(
            f"Novamind twin demo: {len(hosts)} TwinHost actors on local Ray, event log in "
            f"{settings.data_dir / 'novamind.db'}, encrypted checkpoints in "
            f"{settings.data_dir / 'checkpoints'}\n"
        )
        print("  week  PHQ-9  latent S (true)  posterior S ± sd  P(episode)  new  alerts")
        pid = "demo-patient"
        appended = 0
        for week in range(9):
            batch = [
                ports.NewEvent(f"demo-{e.seq}", e.day, e.payload)
                for e in patient.events
                if 7 * week <= e.day < 7 * (week + 1)
            ]
            result = await runtime.ingest(pid, batch)
            summary = await runtime.summary(pid)
            fired = sorted({a.rule for a in result.alerts if a.status == "fired"})
            new = sum(not r.duplicate for r in result.appended)
            appended += new
            observed = [e.payload.total for e in batch if isinstance(e.payload, events.Phq9)]
            truth = float(patient.severity[min(7 * week, len(patient.severity) - 1)])
            print(
                f"  {week:4d}  {observed[0] if observed else '-':>5}  {truth:15.1f}  "
                f"{summary.severity_mean:9.1f} ± {summary.severity_sd:3.1f}  "
                f"{summary.p_episode:10.2f}  {new:3d}  {', '.join(fired) or '-'}"
            )
        if appended:
            print("  (a rerun of `make up` appends nothing: every event has an idempotency key)")
        else:
            print(
                "  (every event was already stored from an earlier run, so nothing was appended; "
                "the twin came back from its checkpoint and shows its current state)"
            )
        continue_now = Scenario(name="continue sertraline 50 mg")
        (now,) = await runtime.forecast(pid, [continue_now], weeks=settings.forecast_weeks)
        state = TwinState.from_bytes(await runtime.state_bytes(pid))
        stats = await runtime.hosts()
    finally:
        ray.shutdown()
    print(f"\nForecast from day {now.as_of_day}, observable PHQ-9 (fan chart):")
    print(_fan_text(now))
    rem = {w: p.value for w, p in now.remission.items()}
    print(f"  P(remission) {rem}; median weeks to remission: {now.median_weeks_to_remission}")
    png = out_dir / "fan_chart.png"
    if _save_png(now, state.phq9_history, png):
        print(f"  fan chart saved to {png}")
    b = Scenario(
        name="sertraline 100 mg + 12 weekly CBT sessions",
        doses=[ScenarioDose(day=0, drug="sertraline", mg_per_day=100.0)],
        therapy_session_days=[7 * k for k in range(12)],
    )
    _, _, contrast = compare(state, continue_now, b, weeks=settings.forecast_weeks)
    last = contrast.weeks[-1]
    remission = {w: round(v, 3) for w, v in contrast.remission_risk_change.items()}
    print(f"\nScenario B ({b.name}) against A ({continue_now.name}), paired on one posterior:")
    print(f"  mean PHQ-9 difference B - A at week {last}: {contrast.mean_difference[-1]:+.2f}")
    print(f"  P(B better than A by >= 5 points) at week {last}: {contrast.p_b_better_by_5[-1]:.3f}")
    print(f"  change in P(remission) by week: {remission}")
    print(f"\nHosts: {stats}")
    print(
        "\nItem 9 (self-harm) answers trigger the clinical safety protocol, never a model forecast."
    )
    return 0


def main(settings: TwinSettings | None = None) -> int:
    """Run the demo (default: on the settings read now); returns the process exit code."""
    return asyncio.run(_run(settings or TwinSettings()))


if __name__ == "__main__":
    sys.exit(main())
