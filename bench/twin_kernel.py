"""Benchmark of the twin kernel. The last line printed is one JSON object.

- ``particle_day_updates_per_s``: batched kernel, 256 twins × 2000 particles, one PHQ-9 and five
  EMA beeps a day (particles × twins × days / seconds); the same for the one-twin-at-a-time
  reference, and their ratio ``speedup_vs_reference`` (both in this process, same workload).
- ``enkf_speedup_vs_filterpy``: the batched EnKF on the linear-Gaussian sub-model against
  filterpy's ``EnsembleKalmanFilter`` run twin by twin (same sizes, same observations).
- ``forecast_ms_p50``: one twin, 12 weeks, one scenario, 2000 particles.
- ``state_bytes``: one serialized twin at the default particle count.
- ``cohort_20000x365_s``: ``simulate_cohort`` for 20,000 patients over 365 days.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import numpy as np

from twin import CohortSpec, simulate_cohort
from twin.assimilation import kernel, linear_gaussian
from twin.assimilation.state import new_twin
from twin.forecast.summary import forecast
from twin.model.virtual_patient import synthetic_patient


def _workload(twins: int, days: int) -> tuple[list, list]:
    states = [new_twin(f"bench-{i}") for i in range(twins)]
    pending = []
    for i in range(twins):
        patient = synthetic_patient(i, days=days - 1, phq9_every=1, ema_per_day=5)
        pending.append(patient.events)
    return states, pending


def bench_kernel(twins: int, days: int) -> dict[str, float]:
    states, pending = _workload(twins, days)
    reference_states = copy.deepcopy(states)
    start = time.perf_counter()
    kernel.apply_events(states, pending)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    for state, evs in zip(reference_states, pending, strict=True):
        kernel.apply_events_reference(state, evs)
    reference = time.perf_counter() - start
    identical = all(a.equals(b) for a, b in zip(states, reference_states, strict=True))
    work = twins * states[0].n_particles * days
    return {
        "particle_day_updates_per_s": work / batched,
        "reference_particle_day_updates_per_s": work / reference,
        "speedup_vs_reference": reference / batched,
        "batched_identical_to_reference": float(identical),
    }


def bench_enkf(twins: int, members: int, steps: int) -> dict[str, float]:
    problem = linear_gaussian.LinearGaussian.default()
    rng = np.random.default_rng(0)
    ys = problem.simulate(rng, twins=twins, steps=steps)
    start = time.perf_counter()
    linear_gaussian.enkf(problem, ys, members=members, rng=np.random.default_rng(1))
    ours = time.perf_counter() - start
    start = time.perf_counter()
    linear_gaussian.filterpy_enkf(problem, ys, members=members)
    theirs = time.perf_counter() - start
    return {
        "enkf_speedup_vs_filterpy": theirs / ours,
        "enkf_twin_steps_per_s": twins * steps / ours,
    }


def bench_forecast(repeats: int) -> dict[str, float]:
    state = new_twin("bench-forecast")
    patient = synthetic_patient(7, days=28, phq9_every=7)
    kernel.apply_events([state], [patient.events])
    forecast(state, weeks=12)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forecast(state, weeks=12)
        times.append(time.perf_counter() - start)
    return {
        "forecast_ms_p50": 1000 * statistics.median(times),
        "state_bytes": float(len(state.to_bytes())),
    }


def bench_cohort() -> dict[str, float]:
    """The kernel's bar: 20,000 patients x 365 days (goal: under 30 s here)."""
    start = time.perf_counter()
    simulate_cohort(CohortSpec(n_patients=20_000, days=365))
    return {"cohort_20000x365_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--twins", type=int, default=256)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    result = {
        "twins": args.twins,
        "particles": 2000,
        "days": args.days,
        **bench_kernel(args.twins, args.days),
        **bench_enkf(args.twins, 100, 50),
        **bench_forecast(args.repeats),
        **bench_cohort(),
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
