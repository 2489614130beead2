"""Composition root and deployable units; nothing imports from here."""
