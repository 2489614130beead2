"""The Ray actor layer that hosts twins."""
