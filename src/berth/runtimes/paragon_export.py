"""Write a torch MLP as a Paragon JSON model (the layout of ``Network.MarshalJSONModel``).

The file is the Paragon Server wrapper ``{"model": <name>, "state": <state>}``.  In
the Go recipe ``state`` is the ``[]byte`` returned by ``MarshalJSONModel``, which
``encoding/json`` writes as a base64 string; that is the default here
(``state_encoding="base64"``).  ``"object"`` nests the network as a JSON object and
``"json"`` stores it as a JSON-text string; :class:`~berth.runtimes.paragon.ParagonRuntime`
loads all three.

Mapping (see :mod:`berth.runtimes.paragon` for the format):

* layer 0 is the input grid, ``w = W`` and ``h = H`` of ``input_hw = (H, W)``, neurons
  ``{"b": 0, "a": "linear", "in": []}``; the torch input is ``[B, H, W]`` (or already
  flat), flattened row-major, so input feature ``i`` is neuron ``x = i % W, y = i // W``;
* each ``nn.Linear(in, out)`` becomes a ``w = out, h = 1`` layer; neuron ``j`` has bias
  ``bias[j]`` and one connection per input feature ``i`` (in Paragon's own order,
  row ``y`` then column ``x``) with weight ``weight[j, i]``;
* the activation that follows a Linear is written on every neuron of its layer:
  ReLU -> ``relu``, LeakyReLU(0.01) -> ``leaky_relu``, Sigmoid -> ``sigmoid``,
  Tanh -> ``tanh``, ELU(1.0) -> ``elu``, none -> ``linear``; a final
  ``Softmax`` over the features -> ``softmax`` on the output layer, which Paragon
  turns into a softmax over the whole output grid.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

_STATE_ENCODINGS = ("base64", "object", "json")


def export_torch_mlp(
    model: "torch.nn.Sequential",
    input_hw: tuple[int, int],
    path: Path,
    *,
    model_name: str = "mnist",
    state_encoding: str = "base64",
) -> None:
    """Write ``model`` (Flatten?, Linear, activation, ...) to ``path`` as Paragon JSON.

    Raises ``ValueError`` for a model Paragon cannot express (a module other than
    Flatten/Linear/supported activations/Identity/Dropout, two activations in a row,
    a LeakyReLU slope other than 0.01, a Softmax that is not the last step, or
    feature sizes that do not chain).
    """
    import torch
    from torch import nn

    if state_encoding not in _STATE_ENCODINGS:
        raise ValueError(f"state_encoding must be one of {', '.join(_STATE_ENCODINGS)}, got {state_encoding!r}")
    try:
        height, width = (int(v) for v in input_hw)
    except (TypeError, ValueError):
        raise ValueError(f"input_hw must be (height, width), got {input_hw!r}") from None
    if height <= 0 or width <= 0:
        raise ValueError(f"input_hw must be positive, got {input_hw!r}")

    # (weight [out, in], bias [out], activation name) per Linear
    specs: list[list[Any]] = []
    activated = False  # the last Linear already has its activation
    softmax_seen = False
    for module in _leaves(model):
        if isinstance(module, (nn.Identity, nn.Dropout)):
            continue  # no-ops at inference
        if softmax_seen:
            raise ValueError(f"{type(module).__name__} after Softmax: Softmax must be the last step")
        if isinstance(module, nn.Flatten):
            if specs:
                raise ValueError("nn.Flatten is only supported before the first nn.Linear")
            if module.start_dim != 1 or module.end_dim != -1:
                raise ValueError("nn.Flatten must flatten every dimension after the batch (start_dim=1, end_dim=-1)")
            continue
        if isinstance(module, nn.Linear):
            weight = module.weight.detach().to(device="cpu", dtype=torch.float32).numpy()
            if module.bias is not None:
                bias = module.bias.detach().to(device="cpu", dtype=torch.float32).numpy()
            else:
                bias = np.zeros(module.out_features, np.float32)
            if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
                raise ValueError(f"Linear #{len(specs) + 1} has non-finite weights or bias; JSON cannot carry them")
            specs.append([weight, bias, "linear"])
            activated = False
            continue
        name = _activation_name(module, nn)
        if name is None:
            raise ValueError(
                f"unsupported module {type(module).__name__}: a Paragon MLP is nn.Flatten, nn.Linear and "
                "ReLU / LeakyReLU(0.01) / Sigmoid / Tanh / ELU(1.0) / Softmax"
            )
        if not specs:
            raise ValueError(f"{type(module).__name__} before the first nn.Linear: Paragon's input layer has no activation")
        if activated:
            raise ValueError(f"two activations in a row ({specs[-1][2]}, then {type(module).__name__})")
        specs[-1][2] = name
        activated = True
        softmax_seen = name == "softmax"
    if not specs:
        raise ValueError("the model has no nn.Linear layer")

    features = height * width
    for li, (weight, _, _) in enumerate(specs, start=1):
        if weight.shape[1] != features:
            what = f"input_hw {height}x{width} = {features} features" if li == 1 else f"{features} features"
            raise ValueError(f"Linear #{li} expects {weight.shape[1]} inputs but receives {what}")
        features = weight.shape[0]

    state = _network_state(height, width, specs)
    if state_encoding == "object":
        wrapped: Any = state
    else:
        text = _dumps(state)
        wrapped = base64.b64encode(text).decode("ascii") if state_encoding == "base64" else text.decode("utf-8")
    _write_atomic(Path(path), _dumps({"model": model_name, "state": wrapped}))


def _network_state(height: int, width: int, specs: list[list[Any]]) -> dict[str, Any]:
    """The sNet object, keys in Go's field order."""
    layers: list[dict[str, Any]] = [
        {
            "w": width,
            "h": height,
            "n": [[{"b": 0.0, "a": "linear", "in": []} for _ in range(width)] for _ in range(height)],
        }
    ]
    src_w, src_h = width, height
    for li, (weight, bias, act) in enumerate(specs, start=1):
        coords = [(i % src_w, i // src_w) for i in range(src_w * src_h)]
        rows = weight.tolist()
        bias_list = [float(b) for b in bias]
        neurons = [
            {
                "b": bias_list[j],
                "a": act,
                "in": [{"layer": li - 1, "x": x, "y": y, "w": wv} for (x, y), wv in zip(coords, rows[j])],
            }
            for j in range(len(rows))
        ]
        layers.append({"w": len(rows), "h": 1, "n": [neurons]})
        src_w, src_h = len(rows), 1
    return {"type": "float32", "layers": layers}


def _activation_name(module: Any, nn: Any) -> str | None:
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, nn.LeakyReLU):
        if abs(float(module.negative_slope) - 0.01) > 1e-12:
            raise ValueError(f"LeakyReLU slope {module.negative_slope} is not supported: Paragon's leaky_relu uses 0.01")
        return "leaky_relu"
    if isinstance(module, nn.Sigmoid):
        return "sigmoid"
    if isinstance(module, nn.Tanh):
        return "tanh"
    if isinstance(module, nn.ELU):
        if abs(float(module.alpha) - 1.0) > 1e-12:
            raise ValueError(f"ELU alpha {module.alpha} is not supported: Paragon's elu uses alpha 1")
        return "elu"
    if isinstance(module, nn.Softmax):
        if module.dim not in (None, 1, -1):
            raise ValueError(f"Softmax(dim={module.dim}) is not supported: it must run over the features (dim=1 or -1)")
        return "softmax"
    return None


def _leaves(module: Any) -> list[Any]:
    from torch import nn

    if isinstance(module, nn.Sequential):
        out: list[Any] = []
        for child in module:
            out.extend(_leaves(child))
        return out
    return [module]


def _dumps(obj: Any) -> bytes:
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return orjson.dumps(obj)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
