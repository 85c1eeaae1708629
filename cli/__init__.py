"""The ``dunning`` command line."""

from cli.main import app, main

__all__ = ["app", "main"]
