"""Runtime for neural networks saved in the Paragon JSON format (openfluke/paragon, Go).

Format facts, read from openfluke/paragon (stored as openfluke/PARAGON):
``persistence_json.go`` and ``v3/persistence_json.go`` (``ToS``/``FromS``,
``MarshalJSONModel``), ``v3/network.go`` (``Grid``, ``Neuron``, ``Connection``,
``forwardLayer``, ``ApplySoftmax``, ``GetOutput``, ``getLocalConnections``),
``v3/train.go`` (``Forward``/``forwardCPU``), ``act.go``, ``act_type.go`` and
``v3/act_type.go`` (activations), ``utils.go`` (``Softmax``),
``v3/webgpu_optimized.go`` (GPU activations); the wrapper from
openfluke/paragon_hosting_example ``README.md`` and ``main.go``:

* ``Network.MarshalJSONModel()`` is ``json.Marshal(n.ToS())`` of::

      sNet    {"type": str, "layers": [sLayer, ...]}
      sLayer  {"w": int, "h": int, "n": [[sNeuron] * w] * h,
               optional "re_enabled", "re_offset", "re_phase", "re_max", "re_budget"}
      sNeuron {"b": float bias, "a": str activation, "in": [sConn, ...]}
      sConn   {"layer": int source layer, "x": int, "y": int, "w": float weight}

  ``type`` is the Go element type name (``float32``, ``float64``, ``int8`` ...).
  ``n`` is row-major: ``n[y][x]`` is the neuron at column ``x`` of row ``y``.
  Layer 0 is the input layer; the output layer is the last one.  There are no
  layer kinds in the JSON: every neuron is "dense" over its own connection list,
  so fully connected and local (5x5 "conv-like") layers differ only in which
  connections are listed.  A connection may name any layer index.  (Newer v3
  "attn" slice types live outside this JSON, in the model-bundle config, so a
  MarshalJSONModel file is always plain dense neurons.)
* Forward (CPU): the 2-D input ``inputs[y][x]`` (len == h, len(row) == w of
  layer 0) is copied into the input neurons; then for ``l = 1..L-1`` every
  neuron computes ``v = act(b + sum(value[c.layer][c.y][c.x] * c.w))``.
  Input-layer activations and connections are never evaluated.
* Activations (``ApplyActivationGeneric``): ``relu``; ``sigmoid``;
  ``tanh``; ``leaky_relu`` (slope 0.01); ``elu`` (alpha 1, v3 clamps the
  exponent at -10); ``linear``; any other name, including ``softmax``, falls
  back to identity per neuron.
* Softmax: after the last layer, if the output layer's neuron ``[0][0]`` has
  activation ``"softmax"``, ``ApplySoftmax`` replaces all ``w*h`` output values
  by a max-shifted softmax over the flattened (row-major) grid.  This runtime
  mirrors that exactly: ``softmax`` is identity per neuron, and the output is
  normalised iff output neuron (x=0, y=0) says ``softmax``.
* Output (``GetOutput``): all ``w*h`` output values flattened row-major
  (``index = y*w + x``); "classes = width * height".
* Wrapper: the Paragon Server recipe writes ``{"model": "mnist", "state": state}``
  where ``state`` is the ``[]byte`` from ``MarshalJSONModel``, so Go's
  ``encoding/json`` stores it as a **base64 string**.  This loader accepts a bare
  sNet, and a wrapper whose ``state`` is a nested object, a JSON-text string, or
  a base64 string of the JSON.

Deviations, all documented and deliberate:

* ``tanh``: Paragon v2 (root ``act_type.go``) and its WebGPU shader use exact
  tanh; v3's CPU path uses a piecewise approximation (``Tanh32``).  Exact tanh
  is the default; option ``tanh: "paragon_v3"`` mirrors the v3 CPU formula.
* Unknown activation names raise ``ValueError`` (Paragon silently uses
  identity); option ``unknown_activation: "linear"`` restores Paragon's fallback.
* Only float networks (``float32``/``float64``, or no type) are served; the
  computation is float32.  Integer fixed-point networks are refused.
* Connections must point to an earlier layer (any earlier layer, so skip
  connections work).  Same- or later-layer connections (which Paragon would read
  in sequential, order-dependent fashion) are refused.  Replay settings are
  ignored: for feed-forward connections a replayed layer recomputes the same
  values.

Each computed layer is compiled at load time into float32 weights: a dense
``[sources, neurons]`` matrix (missing connections are zeros) so a batch is one
matmul, or, for large very sparse layers where the dense matrix would be huge,
a padded gather table (``[neurons, max fan-in]`` indices and weights) that is
still evaluated vectorised over the batch.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .base import Batch, Placement, Runtime, RuntimeInfo, Signature, TensorSpec

log = logging.getLogger(__name__)

DEFAULT_MAX_FILE_MB = 512.0
#: a layer whose dense matrix has more elements than this and than
#: ``_DENSE_FILL_FACTOR`` times its connection count is compiled as a gather table
DEFAULT_MAX_DENSE_ELEMENTS = 1 << 22
_DENSE_FILL_FACTOR = 8
#: bound on the temporary ``batch * neurons * k`` block of the gather path
_GATHER_BLOCK_ELEMENTS = 1 << 22

#: every activation name Paragon's forward pass gives a meaning to
ACTIVATIONS: tuple[str, ...] = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "elu", "softmax")
_FLOAT_TYPES = {"float32", "float64", ""}
_INT_TYPES = {
    "int", "int8", "int16", "int32", "int64",
    "uint", "uint8", "uint16", "uint32", "uint64",
}  # fmt: skip
_TANH_MODES = ("exact", "paragon_v3")


# ── activations (float32 in, float32 out, no mutation of the input) ─────────


def _linear(z: np.ndarray) -> np.ndarray:
    return z


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, np.float32(0))


def _leaky_relu(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, z * np.float32(0.01))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # overflow-free form of 1 / (1 + exp(-z))
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(np.float32, copy=False)


def _tanh(z: np.ndarray) -> np.ndarray:
    return np.tanh(z)


def _tanh_paragon_v3(z: np.ndarray) -> np.ndarray:
    """Paragon v3 ``Tanh32``: a piecewise approximation, mirrored formula for formula."""
    a = np.abs(z)
    tail = np.sign(z) * (1 - 2 / (1 + 2 * a))
    out = np.where(a < 0.25, z, tail)
    out = np.where(z > 1, np.float32(1), out)
    out = np.where(z < -1, np.float32(-1), out)
    return out.astype(np.float32, copy=False)


def _elu(z: np.ndarray) -> np.ndarray:
    # v3: exp(max(x, -10)) - 1 for x < 0
    return np.where(z >= 0, z, np.expm1(np.maximum(z, np.float32(-10)))).astype(np.float32, copy=False)


_ACTIVATION_FNS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": _linear,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "elu": _elu,
    "softmax": _linear,  # per neuron; the output-layer softmax is applied separately
}


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    z64 = z.astype(np.float64)
    z64 -= z64.max(axis=1, keepdims=True) if z64.shape[1] else 0.0
    np.exp(z64, out=z64)
    z64 /= z64.sum(axis=1, keepdims=True)
    return z64.astype(np.float32)


# ── compiled model ──────────────────────────────────────────────────────────


@dataclass(frozen=True)
class _DenseLayer:
    #: (source layer, [n_source, n_neurons] float32) pairs
    parts: tuple[tuple[int, np.ndarray], ...]


@dataclass(frozen=True)
class _GatherLayer:
    sources: tuple[int, ...]  # concatenated in this order
    index: np.ndarray  # [n_neurons, k] into the concatenated sources
    weight: np.ndarray  # [n_neurons, k] float32, zero where padded


@dataclass(frozen=True)
class _Layer:
    index: int
    size: int
    bias: np.ndarray  # [n_neurons] float32
    weights: _DenseLayer | _GatherLayer
    #: (activation fn, neuron indices or None for "all neurons")
    activations: tuple[tuple[Callable[[np.ndarray], np.ndarray], np.ndarray | None], ...]
    #: source layers whose values are no longer needed after this layer
    release: tuple[int, ...]


@dataclass(frozen=True)
class _Compiled:
    input_hw: tuple[int, int]
    n_inputs: int
    n_outputs: int
    output_layer: int
    layers: tuple[_Layer, ...]
    softmax_output: bool
    details: dict[str, Any]


class ParagonRuntime(Runtime):
    """Serves a Paragon JSON network with NumPy (CPU).

    Options: ``max_file_mb`` (default 512), ``tanh`` (``"exact"`` or
    ``"paragon_v3"``), ``unknown_activation`` (``"error"`` or ``"linear"``),
    ``max_dense_elements`` (threshold for the gather path).
    """

    backend = "paragon"
    platform = "paragon_json"

    def __init__(self, path: Path, placement: Placement, options: Mapping[str, Any] | None = None):
        super().__init__(path, placement, options)
        self._model: _Compiled | None = None
        self._signature: Signature | None = None

    # ── lifecycle ──────────────────────────────────────────────────────────

    def load(self) -> None:
        opts = self._parse_options()
        doc = self._read_document(opts["max_file_mb"])
        model_name, net = self._unwrap(doc)
        compiled = self._compile(net, model_name, opts)
        h, w = compiled.input_hw
        self._signature = Signature(
            inputs=(TensorSpec("input", np.dtype(np.float32), (-1, h, w)),),
            outputs=(TensorSpec("output", np.dtype(np.float32), (-1, compiled.n_outputs)),),
        )
        self._model = compiled

    def unload(self) -> None:
        self._model = None

    @property
    def signature(self) -> Signature:
        if self._signature is None:
            raise RuntimeError("Paragon model is not loaded")
        return self._signature

    def info(self) -> RuntimeInfo:
        details = dict(self._model.details) if self._model is not None else {}
        return RuntimeInfo(backend=self.backend, platform=self.platform, accelerated=False, details=details)

    # ── inference ──────────────────────────────────────────────────────────

    def run(self, inputs: Batch) -> dict[str, np.ndarray]:
        model = self._model
        if model is None:
            raise RuntimeError("Paragon model is not loaded")
        if "input" not in inputs:
            raise ValueError(f"missing input 'input' (got: {', '.join(sorted(inputs)) or 'none'})")
        x = np.asarray(inputs["input"])
        if x.dtype.kind not in "fiub":
            raise ValueError(f"input 'input' must be numeric, got dtype {x.dtype}")
        h, w = model.input_hw
        if x.ndim == 3 and x.shape[1:] == (h, w):
            x = x.reshape(x.shape[0], h * w)
        elif not (x.ndim == 2 and x.shape[1] == h * w):
            raise ValueError(
                f"input 'input' must have shape [batch, {h}, {w}] or [batch, {h * w}], got {list(x.shape)}"
            )
        values: dict[int, np.ndarray] = {0: np.ascontiguousarray(x, dtype=np.float32)}
        batch = x.shape[0]
        for layer in model.layers:
            values[layer.index] = self._forward_layer(layer, values, batch)
            for gone in layer.release:
                values.pop(gone, None)
        out = values[model.output_layer]
        if model.softmax_output:
            out = _softmax_rows(out)
        return {"output": np.ascontiguousarray(out, dtype=np.float32)}

    @staticmethod
    def _forward_layer(layer: _Layer, values: Mapping[int, np.ndarray], batch: int) -> np.ndarray:
        weights = layer.weights
        if isinstance(weights, _DenseLayer):
            z: np.ndarray | None = None
            for source, matrix in weights.parts:
                term = values[source] @ matrix
                z = term if z is None else z + term
            z = np.zeros((batch, layer.size), np.float32) if z is None else z
            z = z + layer.bias
        else:
            srcs = [values[s] for s in weights.sources]
            flat = srcs[0] if len(srcs) == 1 else np.concatenate(srcs, axis=1)
            z = np.broadcast_to(layer.bias, (batch, layer.size)).copy()
            k_total = weights.index.shape[1]
            step = max(1, _GATHER_BLOCK_ELEMENTS // max(1, batch * layer.size))
            for k0 in range(0, k_total, step):
                idx = weights.index[:, k0 : k0 + step]
                z += np.einsum("bnk,nk->bn", flat[:, idx], weights.weight[:, k0 : k0 + step])
        if len(layer.activations) == 1 and layer.activations[0][1] is None:
            return layer.activations[0][0](z)
        out = np.empty_like(z)
        for fn, idx in layer.activations:
            out[:, idx] = fn(z[:, idx])
        return out

    # ── loading helpers ────────────────────────────────────────────────────

    def _where(self) -> str:
        return f"Paragon model '{self.path.name}'"

    def _parse_options(self) -> dict[str, Any]:
        o = self.options
        try:
            max_mb = float(o.get("max_file_mb", DEFAULT_MAX_FILE_MB))
        except (TypeError, ValueError):
            raise ValueError(f"option max_file_mb must be a number, got {o.get('max_file_mb')!r}") from None
        if not max_mb > 0:
            raise ValueError(f"option max_file_mb must be positive, got {max_mb}")
        tanh_mode = o.get("tanh", "exact")
        if tanh_mode not in _TANH_MODES:
            raise ValueError(f"option tanh must be one of {', '.join(_TANH_MODES)}, got {tanh_mode!r}")
        unknown = o.get("unknown_activation", "error")
        if unknown not in ("error", "linear"):
            raise ValueError(f"option unknown_activation must be 'error' or 'linear', got {unknown!r}")
        max_dense = o.get("max_dense_elements", DEFAULT_MAX_DENSE_ELEMENTS)
        if isinstance(max_dense, bool) or not isinstance(max_dense, int) or max_dense < 0:
            raise ValueError(f"option max_dense_elements must be a non-negative integer, got {max_dense!r}")
        return {"max_file_mb": max_mb, "tanh": tanh_mode, "unknown_activation": unknown, "max_dense": max_dense}

    def _read_document(self, max_mb: float) -> Any:
        limit = int(max_mb * 1024 * 1024)
        try:
            size = self.path.stat().st_size
        except OSError as e:
            raise ValueError(f"{self._where()}: cannot read file ({e.strerror or e})") from None
        if size > limit:
            raise ValueError(
                f"{self._where()}: file is {size / 1048576:.1f} MiB, over the {max_mb:g} MiB limit (option max_file_mb)"
            )
        with open(self.path, "rb") as f:
            raw = f.read(limit + 1)
        if len(raw) > limit:  # grew after stat
            raise ValueError(f"{self._where()}: file is over the {max_mb:g} MiB limit (option max_file_mb)")
        return self._parse_json(raw, "file")

    def _parse_json(self, raw: bytes | str, what: str) -> Any:
        try:
            import orjson
        except ImportError:  # pragma: no cover - orjson is a dependency
            orjson = None
        try:
            if orjson is not None:
                return orjson.loads(raw)
            return json.loads(raw, parse_constant=_reject_constant)
        except RecursionError:
            raise ValueError(f"{self._where()}: {what} is not valid JSON (nested too deeply)") from None
        except (ValueError, TypeError) as e:  # orjson.JSONDecodeError and json.JSONDecodeError are ValueErrors
            raise ValueError(f"{self._where()}: {what} is not valid JSON ({e})") from None

    def _unwrap(self, doc: Any) -> tuple[str | None, dict[str, Any]]:
        if not isinstance(doc, dict):
            raise ValueError(f"{self._where()}: top level must be a JSON object, got {_kind(doc)}")
        if "layers" in doc:
            return None, doc
        if "state" not in doc:
            raise ValueError(
                f"{self._where()}: expected a Paragon network ({{'type', 'layers'}}) "
                "or a wrapper {'model', 'state'}; found neither 'layers' nor 'state'"
            )
        name = doc.get("model")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"{self._where()}: wrapper field 'model' must be a string, got {_kind(name)}")
        state = doc["state"]
        if isinstance(state, str):
            text = state.strip()
            if text.startswith("{"):
                state = self._parse_json(text, "'state' string")
            else:
                try:
                    decoded = base64.b64decode(text, validate=True)
                except (binascii.Error, ValueError):
                    raise ValueError(
                        f"{self._where()}: 'state' is a string but neither JSON text nor base64 "
                        "(Go encodes the []byte from MarshalJSONModel as base64)"
                    ) from None
                state = self._parse_json(decoded, "base64-decoded 'state'")
        if not isinstance(state, dict):
            raise ValueError(f"{self._where()}: 'state' must be a Paragon network object, got {_kind(state)}")
        if "layers" not in state:
            raise ValueError(f"{self._where()}: 'state' has no 'layers'")
        return name, state

    def _compile(self, net: dict[str, Any], model_name: str | None, opts: Mapping[str, Any]) -> _Compiled:
        where = self._where()
        type_name = net.get("type", "")
        if type_name is None:
            type_name = ""
        if not isinstance(type_name, str):
            raise ValueError(f"{where}: 'type' must be a string, got {_kind(type_name)}")
        if type_name in _INT_TYPES:
            raise ValueError(
                f"{where}: integer (fixed-point) Paragon networks (type '{type_name}') are not supported; "
                "only float32/float64"
            )
        if type_name not in _FLOAT_TYPES:
            raise ValueError(f"{where}: unknown network type '{type_name}' (expected float32 or float64)")

        layers = net["layers"]
        if not isinstance(layers, list):
            raise ValueError(f"{where}: 'layers' must be a list, got {_kind(layers)}")
        if len(layers) < 2:
            raise ValueError(f"{where}: a network needs an input layer and at least one more layer, got {len(layers)}")

        acts = dict(_ACTIVATION_FNS)
        if opts["tanh"] == "paragon_v3":
            acts["tanh"] = _tanh_paragon_v3
        lenient = opts["unknown_activation"] == "linear"

        # pass 1: shapes
        shapes: list[tuple[int, int]] = []  # (w, h)
        for li, layer in enumerate(layers):
            if not isinstance(layer, dict):
                raise ValueError(f"{where}: layer {li} must be an object, got {_kind(layer)}")
            w, h = layer.get("w"), layer.get("h")
            if not _is_int(w) or not _is_int(h) or w <= 0 or h <= 0:
                raise ValueError(f"{where}: layer {li} must have positive integer 'w' and 'h', got w={w!r} h={h!r}")
            rows = layer.get("n")
            if not isinstance(rows, list) or len(rows) != h:
                got = len(rows) if isinstance(rows, list) else _kind(rows)
                raise ValueError(f"{where}: layer {li} 'n' must be a list of h={h} rows, got {got}")
            for y, row in enumerate(rows):
                if not isinstance(row, list) or len(row) != w:
                    got = len(row) if isinstance(row, list) else _kind(row)
                    raise ValueError(f"{where}: layer {li} row {y} must hold w={w} neurons, got {got}")
            shapes.append((w, h))

        # pass 2: neurons and connections
        n_layers = len(layers)
        compiled_layers: list[_Layer] = []
        last_use: dict[int, int] = {}
        total_conns = 0
        modes: list[str] = []
        hidden_softmax: list[int] = []
        for li in range(1, n_layers):
            w, h = shapes[li]
            size = w * h
            bias = np.zeros(size, np.float64)
            names: list[str] = []
            tgt: list[int] = []
            src_layer: list[int] = []
            src_idx: list[int] = []
            wts: list[float] = []
            for y, row in enumerate(layers[li]["n"]):
                for x, neuron in enumerate(row):
                    at = f"layer {li} neuron (x={x}, y={y})"
                    if not isinstance(neuron, dict):
                        raise ValueError(f"{where}: {at} must be an object, got {_kind(neuron)}")
                    b = _finite(neuron.get("b", 0.0))
                    if b is None:
                        raise ValueError(f"{where}: {at} bias 'b' must be a finite number, got {neuron.get('b')!r}")
                    flat = y * w + x
                    bias[flat] = b
                    a = neuron.get("a", "")
                    if not isinstance(a, str):
                        raise ValueError(f"{where}: {at} activation 'a' must be a string, got {_kind(a)}")
                    if a not in acts:
                        if not lenient:
                            raise ValueError(
                                f"{where}: {at} has unknown activation '{a}' "
                                f"(Paragon defines: {', '.join(ACTIVATIONS)}); "
                                "set option unknown_activation='linear' for Paragon's identity fallback"
                            )
                        a = "linear"
                    names.append(a)
                    ins = neuron.get("in")
                    if ins is None:
                        continue
                    if not isinstance(ins, list):
                        raise ValueError(f"{where}: {at} 'in' must be a list, got {_kind(ins)}")
                    for k, c in enumerate(ins):
                        if not isinstance(c, dict):
                            raise ValueError(f"{where}: {at} input #{k} must be an object, got {_kind(c)}")
                        sl, sx, sy, cw = c.get("layer"), c.get("x"), c.get("y"), _finite(c.get("w"))
                        if not (_is_int(sl) and _is_int(sx) and _is_int(sy)):
                            raise ValueError(
                                f"{where}: {at} input #{k}: 'layer', 'x' and 'y' must be integers, "
                                f"got layer={sl!r} x={sx!r} y={sy!r}"
                            )
                        if cw is None:
                            raise ValueError(
                                f"{where}: {at} input #{k}: weight 'w' must be a finite number, got {c.get('w')!r}"
                            )
                        if not 0 <= sl < n_layers:
                            raise ValueError(
                                f"{where}: {at} input #{k}: connection to nonexistent layer {sl} "
                                f"(the network has layers 0..{n_layers - 1})"
                            )
                        sw, sh = shapes[sl]
                        if not (0 <= sx < sw and 0 <= sy < sh):
                            raise ValueError(
                                f"{where}: {at} input #{k}: connection to nonexistent neuron "
                                f"(layer={sl}, x={sx}, y={sy}); layer {sl} is {sw} wide and {sh} high"
                            )
                        if sl >= li:
                            raise ValueError(
                                f"{where}: {at} input #{k}: connection from layer {sl} is not feed-forward; "
                                "only connections to earlier layers can be compiled"
                            )
                        tgt.append(flat)
                        src_layer.append(sl)
                        src_idx.append(sy * sw + sx)
                        wts.append(cw)
            total_conns += len(wts)
            if li < n_layers - 1 and "softmax" in names:
                hidden_softmax.append(li)

            weights, mode = self._compile_weights(size, shapes, tgt, src_layer, src_idx, wts, opts["max_dense"])
            modes.append(mode)
            used = weights.sources if isinstance(weights, _GatherLayer) else tuple(s for s, _ in weights.parts)
            for s in used:
                last_use[s] = li
            compiled_layers.append(
                _Layer(
                    index=li,
                    size=size,
                    bias=_frozen(bias.astype(np.float32)),
                    weights=weights,
                    activations=_activation_groups(names, acts),
                    release=(),
                )
            )

        output_layer = n_layers - 1
        # free each source's values after its last consumer (never the output)
        releases: dict[int, list[int]] = {}
        for s, li in last_use.items():
            if s != output_layer:
                releases.setdefault(li, []).append(s)
        compiled_layers = [
            _Layer(L.index, L.size, L.bias, L.weights, L.activations, tuple(sorted(releases.get(L.index, ()))))
            for L in compiled_layers
        ]
        if hidden_softmax:
            log.warning(
                "%s: 'softmax' on hidden layer(s) %s acts as identity, as in Paragon", where, hidden_softmax
            )

        out_first = layers[output_layer]["n"][0][0]
        softmax_output = isinstance(out_first, dict) and out_first.get("a") == "softmax"
        in_w, in_h = shapes[0]
        out_w, out_h = shapes[output_layer]
        replay = [li for li, L in enumerate(layers) if any(L.get(k) for k in ("re_enabled", "re_offset", "re_max"))]
        details: dict[str, Any] = {
            "model": model_name,
            "type": type_name or "float32",
            "layers": [[w, h] for (w, h) in shapes],
            "connections": total_conns,
            "layer_modes": modes,
            "softmax_output": softmax_output,
            "tanh": opts["tanh"],
            "compute_dtype": "float32",
        }
        if replay:
            details["replay_ignored_layers"] = replay
        return _Compiled(
            input_hw=(in_h, in_w),
            n_inputs=in_w * in_h,
            n_outputs=out_w * out_h,
            output_layer=output_layer,
            layers=tuple(compiled_layers),
            softmax_output=softmax_output,
            details=details,
        )

    @staticmethod
    def _compile_weights(
        size: int,
        shapes: list[tuple[int, int]],
        tgt: list[int],
        src_layer: list[int],
        src_idx: list[int],
        wts: list[float],
        max_dense: int,
    ) -> tuple[_DenseLayer | _GatherLayer, str]:
        t = np.asarray(tgt, dtype=np.int64)
        sl = np.asarray(src_layer, dtype=np.int64)
        si = np.asarray(src_idx, dtype=np.int64)
        wv = np.asarray(wts, dtype=np.float64)
        sources = tuple(int(s) for s in np.unique(sl))
        if not sources:
            return _DenseLayer(parts=()), "dense"
        offsets = np.zeros(len(shapes), np.int64)
        n_total = 0
        for s in sources:
            offsets[s] = n_total
            n_total += shapes[s][0] * shapes[s][1]
        g = offsets[sl] + si  # index into the concatenated sources
        dense_elements = n_total * size
        if dense_elements <= max(max_dense, _DENSE_FILL_FACTOR * len(wv)):
            matrix = np.zeros((n_total, size), np.float64)
            np.add.at(matrix, (g, t), wv)  # repeated connections add up, as in Paragon
            parts = []
            for s in sources:
                start = int(offsets[s])
                part = matrix[start : start + shapes[s][0] * shapes[s][1]]
                parts.append((s, _frozen(np.ascontiguousarray(part, dtype=np.float32))))
            return _DenseLayer(parts=tuple(parts)), "dense"
        # gather table: merge repeated (neuron, source) pairs, pad each neuron's list to k
        key = t * n_total + g
        uniq, inverse = np.unique(key, return_inverse=True)
        merged = np.bincount(inverse.ravel(), weights=wv, minlength=len(uniq))
        ut, ug = uniq // n_total, uniq % n_total
        counts = np.bincount(ut, minlength=size)
        k = int(counts.max())
        starts = np.cumsum(counts) - counts
        pos = np.arange(len(uniq)) - starts[ut]
        index = np.zeros((size, k), np.intp)
        weight = np.zeros((size, k), np.float32)
        index[ut, pos] = ug
        weight[ut, pos] = merged
        return _GatherLayer(sources=sources, index=_frozen(index), weight=_frozen(weight)), f"gather(k={k})"


# ── small helpers ───────────────────────────────────────────────────────────


def _activation_groups(
    names: list[str], acts: Mapping[str, Callable[[np.ndarray], np.ndarray]]
) -> tuple[tuple[Callable[[np.ndarray], np.ndarray], np.ndarray | None], ...]:
    fns = [acts[n] for n in names]
    distinct = {id(f): f for f in fns}
    if len(distinct) == 1:
        return ((fns[0], None),)
    groups: dict[int, list[int]] = {}
    for i, f in enumerate(fns):
        groups.setdefault(id(f), []).append(i)
    return tuple((distinct[fid], _frozen(np.asarray(idx, np.intp))) for fid, idx in groups.items())


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v: Any) -> float | None:
    """``v`` as a finite float, or None when it is not a finite JSON number."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(v), type(v).__name__)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")
