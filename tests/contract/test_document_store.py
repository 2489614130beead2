"""DocumentStore contract: upsert, read, keyset pages by patient in id order, delete one or all."""

from twin.ports import Document


def doc(collection: str, doc_id: str, patient: str | None, body: bytes = b"x") -> Document:
    return Document(collection, doc_id, patient, body, 1.7e9)


async def test_put_get_replace_list_delete(document_store):
    assert await document_store.get("scenario", "a") is None
    await document_store.put(doc("scenario", "b", "p1", b"\x00\xffsealed"))
    await document_store.put(doc("scenario", "a", "p1"))
    await document_store.put(doc("scenario", "c", "p2"))
    await document_store.put(doc("break_glass", "a", "p1"))
    assert await document_store.get("scenario", "b") == doc(
        "scenario", "b", "p1", b"\x00\xffsealed"
    )
    await document_store.put(doc("scenario", "b", "p1", b"replaced"))
    assert (await document_store.get("scenario", "b")).body == b"replaced"
    ids = [d.doc_id for d in await document_store.list("scenario")]
    assert ids == ["a", "b", "c"]
    mine = await document_store.list("scenario", patient_id="p1")
    assert [d.doc_id for d in mine] == ["a", "b"]
    page = await document_store.list("scenario", after="a", limit=1)
    assert [d.doc_id for d in page] == ["b"]
    assert await document_store.delete_patient("p1") == 3
    assert [d.doc_id for d in await document_store.list("scenario")] == ["c"]
    assert await document_store.list("break_glass") == []
    assert await document_store.delete_patient("p1") == 0


async def test_scan_pages_every_collection_in_key_order(document_store):
    assert await document_store.scan() == []
    for collection, doc_id in [("scenario", "b"), ("break_glass", "z"), ("scenario", "a"),
                               ("break_glass", "a"), ("a", "m")]:  # fmt: skip
        await document_store.put(doc(collection, doc_id, "p1"))
    expected = [("a", "m"), ("break_glass", "a"), ("break_glass", "z"), ("scenario", "a"),
                ("scenario", "b")]  # fmt: skip
    assert [(d.collection, d.doc_id) for d in await document_store.scan()] == expected
    seen, after = [], None
    while page := await document_store.scan(after=after, limit=2):
        seen += [(d.collection, d.doc_id) for d in page]
        after = seen[-1]
    assert seen == expected
    assert await document_store.scan(after=("scenario", "b")) == []


async def test_delete_removes_one_document_only(document_store):
    await document_store.put(doc("scenario", "a", "p1"))
    await document_store.put(doc("scenario", "b", "p1"))
    await document_store.put(doc("jobs", "a", None))
    assert await document_store.delete("scenario", "a") is True
    assert await document_store.get("scenario", "a") is None
    assert await document_store.delete("scenario", "a") is False
    assert [(d.collection, d.doc_id) for d in await document_store.scan()] == [
        ("jobs", "a"),
        ("scenario", "b"),
    ]
    assert await document_store.delete("jobs", "a") is True  # also one of no patient
    assert [d.doc_id for d in await document_store.scan()] == ["b"]
