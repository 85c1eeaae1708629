"""Settings and the files billing leads edit: escalation policies and message templates."""

from config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
