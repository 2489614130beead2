"""Storage adapters for the ports of ``twin`` (issue 3 fills this in)."""
