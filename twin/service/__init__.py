"""Use cases over the ports: the twin host (virtual actors), independent of Ray."""
