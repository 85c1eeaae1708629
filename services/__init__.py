"""Use cases, each owned once: facts, staff actions, queries, policy operations, identities.

The CLI, the HTTP API and any later UI are thin adapters over this package: parse, call, render.
"""
