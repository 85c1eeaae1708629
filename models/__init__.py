"""Data shapes: pydantic payloads and policy schema here, SQLAlchemy ORM in ``models.orm``."""
