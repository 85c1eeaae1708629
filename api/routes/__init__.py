"""Routers of the HTTP API: intake, staff actions, provider webhooks."""
