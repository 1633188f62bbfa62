"""CUDA paths, run where a GPU is present (skipped elsewhere, e.g. in CI).

Checks what a CPU machine cannot: devices discovered from CUDA, a torch model placed
on the GPU, memory measured as the device allocator's delta, and onnxruntime reporting
truthfully which execution provider it got.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from berth.config import load_config  # noqa: E402
from berth.engine import Engine  # noqa: E402
from models import write_linear_softmax  # noqa: E402

_MB = 1024 * 1024


def _write_big_torchscript(path: Path, features: int = 4096) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(features, features), torch.nn.ReLU(), torch.nn.Linear(features, 10)).eval()
    traced = torch.jit.trace(model, torch.zeros(1, features))
    signature = {"inputs": [{"name": "x", "dtype": "float32", "shape": [-1, features]}], "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 10]}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(traced, str(path), _extra_files={"signature.json": json.dumps(signature)})


def test_torch_model_on_cuda_measures_allocator_delta(tmp_path: Path) -> None:
    _write_big_torchscript(tmp_path / "repo" / "big" / "1" / "model.pt")
    write_linear_softmax(tmp_path / "repo" / "small.onnx")

    async def scenario() -> tuple[dict, dict, object, object]:
        engine = Engine(load_config(overrides={"repository": str(tmp_path / "repo")}))
        await engine.start()
        try:
            assert [d.id for d in engine.devices][0] == "cuda:0"
            x = np.random.default_rng(0).random((4, 4096), dtype=np.float32)
            prediction = await engine.infer("big", {"x": x})
            small = await engine.infer("small", {"x": np.ones((1, 4), np.float32)})
            rows = {m["name"]: m for m in engine.list_models()}
            return rows["big"], rows["small"], prediction, small
        finally:
            await engine.stop()

    big, small, prediction, small_prediction = asyncio.run(scenario())
    assert prediction.device_id == "cuda:0" and prediction.accelerated
    assert prediction.outputs["y"].shape == (4, 10)
    # 4096x4096 + 4096x10 float32 weights = ~64 MB held by the CUDA allocator; the CUDA
    # context and cuBLAS workspace (hundreds of MB) were set up by prepare() and are not
    # charged to the model
    assert big["memory_measured"] and 60 <= big["memory_mb"] < 160, big["memory_mb"]
    assert big["device"] == "cuda:0"
    import onnxruntime as ort

    cuda_ep = "CUDAExecutionProvider" in ort.get_available_providers()
    assert small["accelerated"] is cuda_ep
    assert ("CUDAExecutionProvider" in small["providers"]) is cuda_ep
    print("onnxruntime providers:", small["providers"], "big model memory MB:", big["memory_mb"])


def test_language_model_on_cuda_in_the_server_and_in_an_executor_process(demo_dir: Path) -> None:
    """The demo LM on the GPU twice: on the server's threads and in its own worker
    process (weights and decode loop there, tokenizer here). Both land on cuda:0, both
    are charged device memory, and greedy decoding gives the same text in both."""
    from berth.generation import SamplingParams
    from berth.generation.service import GenerationService
    folder = demo_dir / "llm" / "models" / "tinyllama"  # the fixture builds the demo if missing

    async def generate(service: GenerationService, model: str) -> str:
        generation = await service.open(model)
        try:
            ids = generation.runtime.encode("Return the number of items", add_special_tokens=True)
            generation.add(ids, SamplingParams(24, 0.0, ignore_eos=True))
            generation.submit()
            async for _ in generation.deltas():
                pass
            (seq,) = generation.sequences
            assert seq.finish_reason == "length" and len(seq.output_ids) == 24
            return seq.text
        finally:
            generation.close()

    async def scenario() -> tuple[dict, dict, str, str]:
        models = {
            "here": {"model_path": str(folder), "preload": True},
            "worker": {"model_path": str(folder), "preload": True, "isolation": "process"},
        }
        engine = Engine(load_config(overrides={"models": models}))
        await engine.start()
        try:
            service = GenerationService(engine)
            here, worker = await generate(service, "here"), await generate(service, "worker")
            rows = {m["name"]: m for m in engine.list_models()}
            return rows["here"], rows["worker"], here, worker
        finally:
            await engine.stop()

    here, worker, here_text, worker_text = asyncio.run(scenario())
    assert here["device"] == worker["device"] == "cuda:0"
    assert here["accelerated"] and worker["accelerated"]
    assert here_text == worker_text and here_text
    assert here["memory_measured"] and here["memory_mb"] > 0.5
    # the worker's share includes its own CUDA context: device-wide memory before and after
    assert worker["memory_measured"] and worker["memory_mb"] > here["memory_mb"]
    print("LM on cuda: in-process", here["memory_mb"], "MB; in a worker", worker["memory_mb"], "MB; text", repr(here_text))
