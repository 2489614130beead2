"""Operator commands: the ``novamind`` CLI and what it runs.

The local platform, the demo, backup and restore, audit verification, migrations and the
generated KubeRay configuration.
"""
