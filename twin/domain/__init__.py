"""Domain value types every layer shares: events, drugs, specs, patients, audit, pseudonyms.

Plain Python and pydantic only, so the SDK carries them without the model.
"""
