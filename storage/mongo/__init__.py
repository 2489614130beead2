"""MongoDB adapter of the document store (PyMongo's asyncio client)."""

from storage.mongo.documents import MongoDocumentStore

__all__ = ["MongoDocumentStore"]
