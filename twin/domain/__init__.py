"""Domain value objects: observations, interventions and events (stdlib only)."""
