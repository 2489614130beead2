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
