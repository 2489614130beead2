"""Documents in MongoDB.

Why PyMongo's ``AsyncMongoClient``: the official driver's native asyncio API (Motor is being
retired in its favour). Every write uses write concern ``w="majority", j=True``: an
acknowledged document is journaled on a majority of the replica set and survives a failover
(weaker concerns can be rolled back; security-reliability.md §4.1). Bodies arrive already
sealed under the patient's data key, so the database never holds readable clinical content.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo import errors as mongo_errors
from pymongo.write_concern import WriteConcern

from twin import errors, ports

__all__ = ["MongoDocumentStore"]

_UNAVAILABLE = (mongo_errors.ConnectionFailure, mongo_errors.ServerSelectionTimeoutError)


def _document(raw: dict[str, Any]) -> ports.Document:
    return ports.Document(
        str(raw["collection"]),
        str(raw["doc_id"]),
        raw.get("patient_id"),
        bytes(raw["body"]),
        float(raw["created_at"]),
    )


class MongoDocumentStore:
    """A :class:`twin.ports.DocumentStore` on one MongoDB collection.

    Args:
        database: A PyMongo ``AsyncDatabase``.
        name: Collection holding every document kind (``_id`` = ``<collection>/<doc_id>``).
    """

    def __init__(self, database: Any, name: str = "documents") -> None:
        self._coll = database.get_collection(name, write_concern=WriteConcern(w="majority", j=True))

    async def ensure_indexes(self) -> None:
        """Create the lookup indexes (idempotent)."""
        await self._call(
            self._coll.create_index,
            [("collection", ASCENDING), ("patient_id", ASCENDING), ("doc_id", ASCENDING)],
        )
        # The backup scan pages in (collection, doc_id) order.
        await self._call(
            self._coll.create_index, [("collection", ASCENDING), ("doc_id", ASCENDING)]
        )

    @staticmethod
    async def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except _UNAVAILABLE as exc:
            raise errors.StorageUnavailableError(
                f"MongoDB unavailable ({type(exc).__name__}); retry"
            ) from None

    async def put(self, document: ports.Document) -> None:
        """Insert or replace (majority-journaled when this returns)."""
        raw = {
            "_id": f"{document.collection}/{document.doc_id}",
            "collection": document.collection,
            "doc_id": document.doc_id,
            "patient_id": document.patient_id,
            "body": document.body,
            "created_at": document.created_at,
        }
        await self._call(self._coll.replace_one, {"_id": raw["_id"]}, raw, upsert=True)

    async def get(self, collection: str, doc_id: str) -> ports.Document | None:
        """One document, or ``None``."""
        raw = await self._call(self._coll.find_one, {"_id": f"{collection}/{doc_id}"})
        return None if raw is None else _document(raw)

    async def scan(
        self, *, after: tuple[str, str] | None = None, limit: int = 1000
    ) -> list[ports.Document]:
        """Every document in ``(collection, doc_id)`` order, after the keyset cursor."""
        query: dict[str, Any] = {}
        if after is not None:
            collection, doc_id = after
            query = {
                "$or": [
                    {"collection": {"$gt": collection}},
                    {"collection": collection, "doc_id": {"$gt": doc_id}},
                ]
            }
        cursor = (
            self._coll.find(query)
            .sort([("collection", ASCENDING), ("doc_id", ASCENDING)])
            .limit(limit)
        )
        raws = await self._call(cursor.to_list)
        return [_document(r) for r in raws]

    async def list(
        self,
        collection: str,
        *,
        patient_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[ports.Document]:
        """Documents in ``doc_id`` order."""
        query: dict[str, Any] = {"collection": collection, "doc_id": {"$gt": after or ""}}
        if patient_id is not None:
            query["patient_id"] = patient_id
        cursor = self._coll.find(query).sort("doc_id", ASCENDING).limit(limit)
        raws = await self._call(cursor.to_list)
        return [_document(r) for r in raws]

    async def delete(self, collection: str, doc_id: str) -> bool:
        """Delete one document."""
        result = await self._call(self._coll.delete_one, {"_id": f"{collection}/{doc_id}"})
        return bool(result.deleted_count)

    async def delete_patient(self, patient_id: str) -> int:
        """Delete a patient's documents."""
        result = await self._call(self._coll.delete_many, {"patient_id": patient_id})
        return int(result.deleted_count)
