"""HTTP front ends: thin translators between wire formats and the Engine."""

from .app import create_app

__all__ = ["create_app"]
