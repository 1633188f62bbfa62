"""The V2 inference protocol (KServe / Open Inference Protocol) over REST, with the
Triton extensions the stock ``tritonclient`` relies on: binary tensor data, model
configuration, model repository and statistics.

- :mod:`.protocol` — inference requests and responses on the wire (JSON + binary)
- :mod:`.metadata` — model metadata, Triton model config, repository index, statistics
- :mod:`.routes`   — the endpoints, over the Engine
"""

from .routes import V2Api

__all__ = ["V2Api"]
