"""Forecasts and what-if scenarios from a twin's posterior."""
