"""The HTTP API (FastAPI); Ray Serve wraps it."""
