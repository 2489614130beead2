"""The HTTP API (FastAPI); Ray Serve wraps it (issue 4)."""
