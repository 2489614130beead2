from tests.builders import Log, twin
from twin.assimilation import kernel
from twin.domain import events as E


def _alerts(state, log):
    return [a for r in kernel.apply_events([state], [log.events])[0] for a in r.alerts]


def test_item9_always_fires_even_when_repeated_and_improving():
    state = twin()
    found = _alerts(state, Log().phq9(0.5, 20, item9=1).phq9(7.5, 8, item9=2).phq9(8.5, 8, item9=2))
    safety = [a for a in found if a.rule == "safety_item9"]
    assert len(safety) == 3
    assert all(a.severity == "critical" and a.status == "fired" for a in safety)
    assert _alerts(twin(), Log().phq9(0.5, 20, item9=0)) == []


def test_reliable_deterioration_against_previous_or_baseline():
    found = _alerts(twin(), Log().phq9(0.5, 10).phq9(7.5, 14).phq9(14.5, 15))
    rules = [(a.rule, a.seq) for a in found]
    assert ("reliable_deterioration", 2) not in rules
    assert ("reliable_deterioration", 3) in rules  # 15 is 5 above the baseline 10


def test_missed_doses_fire_on_the_second_consecutive_miss():
    log = Log().add(0.0, E.Prescription("sertraline", 50.0))
    log.add(0.5, E.DoseTaken("sertraline", False)).add(1.5, E.DoseTaken("sertraline", False))
    log.add(2.5, E.DoseTaken("sertraline", True)).add(3.5, E.DoseTaken("sertraline", False))
    fired = [a.seq for a in _alerts(twin(), log) if a.rule == "missed_doses"]
    assert fired == [3]


def test_stale_data():
    found = _alerts(twin(), Log().phq9(0.5, 10).add(40.0, E.Gad7(5)))
    assert [a.rule for a in found] == ["stale_data"]


def test_composite_rule_reports_insufficient_data_instead_of_firing():
    state = twin()
    log = Log()
    for day in range(20):
        log.add(day + 0.1, E.Steps(8000))  # steps only: sleep is missing
    found = [a for a in _alerts(state, log) if a.rule == "behavioural_decline"]
    assert found and all(a.status == "insufficient_data" for a in found)
    assert "sleep" in found[-1].detail


def test_composite_rule_fires_when_both_metrics_drop():
    state = twin()
    log = Log()
    for day in range(14):
        log.add(day + 0.1, E.SleepDuration(7.5)).add(day + 0.2, E.Steps(9000))
    for day in range(14, 20):
        log.add(day + 0.1, E.SleepDuration(5.5)).add(day + 0.2, E.Steps(2500))
    found = [a for a in _alerts(state, log) if a.rule == "behavioural_decline"]
    assert found[-1].status == "fired"
    quiet = twin("q")
    calm = Log()
    for day in range(20):
        calm.add(day + 0.1, E.SleepDuration(7.5)).add(day + 0.2, E.Steps(9000))
    assert all(a.status != "fired" for a in _alerts(quiet, calm))


def test_item9_answered_alone_fires_the_safety_alert_and_carries_no_severity_evidence():
    state = twin()
    before = state.log_weights.copy()
    log = Log()
    log.events.append(E.Event(1, 0.5, E.Phq9Item9(2)))
    log.events.append(E.Event(2, 0.6, E.Phq9Item9(0)))
    results = kernel.apply_events([state], [log.events])[0]
    assert [a.rule for a in results[0].alerts] == ["safety_item9"]
    assert results[0].alerts[0].severity == "critical" and results[1].alerts == ()
    assert all(r.log_evidence is None for r in results)
    assert (state.log_weights == before).all()
