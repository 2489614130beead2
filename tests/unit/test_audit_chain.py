"""Tamper detection of the audit chain: every edit, deletion, insertion and reordering is found."""

import dataclasses
import random

from twin.domain.audit import GENESIS, AuditEntry, AuditRecord, entry_hash, verify_chain


def _chain(n: int) -> list[AuditEntry]:
    out, prev = [], GENESIS
    for seq in range(1, n + 1):
        record = AuditRecord(f"user-{seq % 7}", "clinician", "twin.read", f"p{seq % 13}",
                             "allowed" if seq % 5 else "denied", "treatment",
                             f"2026-11-29T00:{seq % 60:02d}:00Z", f"req-{seq}")  # fmt: skip
        entry = AuditEntry(seq, record, prev, entry_hash(prev, seq, record))
        out.append(entry)
        prev = entry.hash
    return out


def test_an_untouched_chain_verifies_and_anchors_its_head():
    chain = _chain(50)
    report = verify_chain(chain)
    assert report.ok and report.entries == 50 and report.head_hash == chain[-1].hash
    assert verify_chain(chain, expected_head=report.head_hash).ok
    truncated = verify_chain(chain[:-3], expected_head=report.head_hash)
    assert not truncated.ok and "anchored" in truncated.reason


def _edit(chain, rng):
    i = rng.randrange(len(chain))
    field = rng.choice(["actor", "outcome", "patient_id", "purpose", "at"])
    record = dataclasses.replace(chain[i].record, **{field: "tampered"})
    chain[i] = dataclasses.replace(chain[i], record=record)


def _delete(chain, rng):
    del chain[rng.randrange(len(chain))]


def _insert(chain, rng):
    i = rng.randrange(len(chain))
    forged = dataclasses.replace(
        chain[i], record=dataclasses.replace(chain[i].record, actor="intruder")
    )
    chain.insert(i, forged)


def _reorder(chain, rng):
    i = rng.randrange(len(chain) - 1)
    chain[i], chain[i + 1] = chain[i + 1], chain[i]


def _edit_and_rehash(chain, rng):
    """A forger who recomputes the edited entry's own hash still breaks the next link."""
    i = rng.randrange(len(chain) - 1)
    record = dataclasses.replace(chain[i].record, outcome="allowed", actor="forger")
    chain[i] = dataclasses.replace(
        chain[i], record=record, hash=entry_hash(chain[i].prev_hash, chain[i].seq, record)
    )


def test_every_random_tampering_is_detected():
    """Against the anchored head (which also catches deleting the newest entries)."""
    rng = random.Random(2026)
    head = verify_chain(_chain(40)).head_hash
    for tamper in (_edit, _delete, _insert, _reorder, _edit_and_rehash):
        for _ in range(100):
            chain = _chain(40)
            tamper(chain, rng)
            assert not verify_chain(chain, expected_head=head).ok, tamper.__name__


def test_tampering_before_the_newest_entry_is_found_even_without_an_anchor():
    rng = random.Random(7)
    for tamper in (_edit, _insert, _reorder, _edit_and_rehash):
        for _ in range(50):
            chain = _chain(40)
            tamper(chain, rng)
            assert not verify_chain(chain).ok, tamper.__name__
    chain = _chain(40)
    del chain[10]
    assert verify_chain(chain).first_bad_seq == 12


def _anchor(chain, n, at="2026-11-29T01:00:00.000+00:00"):
    from twin.domain.audit import AuditAnchor

    return AuditAnchor(n, chain[n - 1].hash if n else GENESIS, at)


def _rewritten(chain, seq):
    """An attacker's chain: one record changed, then every hash from it on recomputed."""
    out, prev = [], GENESIS
    for entry in chain:
        record = entry.record
        if entry.seq == seq:
            record = dataclasses.replace(record, outcome="allowed", actor="forger")
        out.append(AuditEntry(entry.seq, record, prev, entry_hash(prev, entry.seq, record)))
        prev = out[-1].hash
    return out


def test_an_intact_chain_agrees_with_every_anchor():
    chain = _chain(30)
    anchors = [_anchor(chain, 20), _anchor(chain, 0), _anchor(chain, 10), _anchor(chain, 30)]
    report = verify_chain(chain, anchors=anchors)
    assert report.ok and report.anchors_checked == 4 and report.contradicted_anchor is None
    assert report.latest_anchor == anchors[3]


def test_a_chain_rewritten_and_rehashed_after_an_anchor_names_the_anchor():
    chain = _chain(30)
    anchors = [_anchor(chain, 10), _anchor(chain, 20), _anchor(chain, 25)]
    forged = _rewritten(chain, 15)
    assert verify_chain(forged).ok  # its links alone are perfect
    report = verify_chain(forged, anchors=anchors)
    assert not report.ok and report.first_bad_seq is None
    assert report.contradicted_anchor == anchors[1]  # the first one it contradicts
    assert report.anchors_checked == 3
    assert "anchor of 20 entries at 2026-11-29T01:00:00.000+00:00" in report.reason
    assert "rewritten" in report.reason


def test_truncation_below_an_anchor_is_caught():
    chain = _chain(30)
    anchors = [_anchor(chain, 10), _anchor(chain, 30)]
    report = verify_chain(chain[:25], anchors=anchors)
    assert not report.ok and report.contradicted_anchor == anchors[1]
    assert "truncated" in report.reason and "25 entries" in report.reason


def test_a_broken_link_is_reported_before_the_anchors_above_it():
    chain = _chain(30)
    _edit_and_rehash(chain, random.Random(3))
    report = verify_chain(chain, anchors=[_anchor(_chain(30), 30)])
    assert not report.ok and report.first_bad_seq is not None
    assert report.contradicted_anchor is None and report.anchors_checked == 0


def test_an_anchor_refuses_fields_no_anchor_holds():
    import pytest

    from twin import errors
    from twin.domain.audit import AuditAnchor

    good = "a" * 64
    bad = [(-1, good, "2026-11-29T00:00:00+00:00"), (1, "A" * 64, "2026-11-29T00:00:00Z"),
           (0, good, "2026-11-29T00:00:00+00:00"), (1, good, "yesterday"),
           (1, good, "2026-11-29T00:00:00"), (True, good, "2026-11-29T00:00:00Z")]  # fmt: skip
    for args in bad:
        with pytest.raises(errors.InvalidInputError):
            AuditAnchor(*args)


def test_an_anchor_holds_at_most_the_largest_seq_and_every_one_fits_the_answer():
    import pytest

    from twin import errors, schemas
    from twin.domain.audit import AuditAnchor
    from twin.domain.events import MAX_SEQ

    at = "2026-11-29T00:00:00.000+00:00"
    with pytest.raises(errors.InvalidInputError):
        AuditAnchor(MAX_SEQ + 1, "a" * 64, at)
    largest = AuditAnchor(MAX_SEQ, "a" * 64, at)
    out = schemas.AuditAnchorOut(entries=largest.entries, head_hash=largest.head_hash, at=at)
    assert out.entries == MAX_SEQ


def test_the_verifier_fed_in_pages_finds_what_one_feed_finds():
    from twin.domain.audit import ChainVerifier

    chain = _chain(30)
    anchors = [_anchor(chain, 10), _anchor(chain, 30)]
    forged = _rewritten(chain, 12)
    for entries in (chain, forged, chain[:20]):
        whole = verify_chain(entries, anchors=anchors)
        verifier = ChainVerifier(anchors)
        for start in range(0, len(entries), 7):
            verifier.feed(entries[start : start + 7])
        assert verifier.report() == whole
