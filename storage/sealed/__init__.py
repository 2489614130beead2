"""Envelope encryption of stored objects (``twin.ports.Sealer``) with AES-256-GCM."""

from storage.sealed.envelope import EnvelopeSealer

__all__ = ["EnvelopeSealer"]
