"""Deployable units: the HTTP API, the Ray pipelines and the operator commands.

Nothing imports from here; ``bootstrap`` is the composition root (docs/architecture.md).
"""
