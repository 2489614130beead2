"""Storage adapters for the ports of ``twin``: one subpackage per backend."""
