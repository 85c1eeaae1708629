"""The HTTP API (FastAPI), served by ``dunning run`` and ``dunning api``."""
