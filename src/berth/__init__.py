"""berth: keep many neural-network models resident and serve them fast."""

__version__ = "0.1.0"
