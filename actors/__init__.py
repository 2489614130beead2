"""Ray actor layer hosting twins (issue 3 fills this in)."""
