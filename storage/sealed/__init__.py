"""Envelope encryption with AES-256-GCM: stored objects (``twin.ports.Sealer``) and backups."""

from storage.sealed.archive import ArchiveReader, ArchiveWriter
from storage.sealed.envelope import EnvelopeSealer

__all__ = ["ArchiveReader", "ArchiveWriter", "EnvelopeSealer"]
