"""berth.v1.InferenceService (seed 003's RPCs) through grpcio stubs."""

from __future__ import annotations

import time
from typing import Iterator

import grpc
import numpy as np
import pytest

from grpc_fixtures import (
    AUDIO_ITEM,
    OUTPUT_ITEM,
    RunningServer,
    berth_stub,
    lipsync_batch,
    lipsync_reference,
    seed_request,
    shared_server,
)

from berth.grpc.generated.berth.v1 import berth_pb2 as pb
from berth.grpc.generated.berth.v1 import berth_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from shared_server(tmp_path_factory, "grpc_berth")


@pytest.fixture
def stub(server: RunningServer) -> Iterator[pb_grpc.InferenceServiceStub]:
    with server.channel() as channel:
        yield berth_stub(channel)


def test_infer_batch_seed_form(stub: pb_grpc.InferenceServiceStub) -> None:
    visual, audio = lipsync_batch(5)
    response = stub.InferBatch(seed_request("lipsync", visual, audio), timeout=30)
    assert response.success and response.error == ""
    assert len(response.outputs) == 5
    expected = lipsync_reference(visual, audio)
    for index, region in enumerate(response.outputs):
        frame = np.frombuffer(region.data, dtype=np.float32).reshape(OUTPUT_ITEM)
        np.testing.assert_allclose(frame, expected[index], rtol=1e-6)
    assert not response.tensors  # the seed's form is answered in the seed's form
    assert response.inference_time_ms > 0
    assert response.gpu_id == -1 and response.device == "cpu"
    (cpu,) = stub.GetModelStats(pb.GetModelStatsRequest(), timeout=10).server.devices
    assert 0 <= response.worker_id < cpu.workers  # a worker thread: a model this size never runs inline (-1)
    assert response.model_version == "1"
    assert response.batch_size >= 5


def test_infer_batch_one_audio_window_for_the_batch(stub: pb_grpc.InferenceServiceStub) -> None:
    """Seed 004's client sends one audio window ([32*16*16]) with a batch of frames."""
    visual, audio = lipsync_batch(3, seed=1)
    request = seed_request("lipsync", visual, audio[:1])
    response = stub.InferBatch(request, timeout=30)
    expected = lipsync_reference(visual, np.repeat(audio[:1], 3, axis=0))
    got = np.stack([np.frombuffer(r.data, dtype=np.float32).reshape(OUTPUT_ITEM) for r in response.outputs])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_infer_batch_named_tensors(stub: pb_grpc.InferenceServiceStub) -> None:
    visual, audio = lipsync_batch(2, seed=2)
    request = pb.InferBatchRequest(model_id="lipsync")
    request.inputs.add(name="visual", datatype="FP32", shape=visual.shape, data=visual.tobytes())
    request.inputs.add(name="audio", datatype="float32", shape=audio.shape, data=audio.tobytes())
    response = stub.InferBatch(request, timeout=30)
    assert not response.outputs
    (tensor,) = response.tensors
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("output", "FP32", [2, *OUTPUT_ITEM])
    got = np.frombuffer(tensor.data, dtype=np.float32).reshape(tensor.shape)
    np.testing.assert_allclose(got, lipsync_reference(visual, audio), rtol=1e-6)


def test_infer_batch_concurrent_requests_share_batches(stub: pb_grpc.InferenceServiceStub) -> None:
    """Many single-frame calls at once: all answered correctly (the batcher may merge them)."""
    frames = [lipsync_batch(1, seed=10 + i) for i in range(16)]
    futures = [stub.InferBatch.future(seed_request("lipsync", v, a), timeout=30) for v, a in frames]
    for (visual, audio), future in zip(frames, futures):
        response = future.result()
        got = np.frombuffer(response.outputs[0].data, dtype=np.float32).reshape(OUTPUT_ITEM)
        np.testing.assert_allclose(got, lipsync_reference(visual, audio)[0], rtol=1e-6)


def test_list_load_unload_and_stats(stub: pb_grpc.InferenceServiceStub) -> None:
    models = {m.model_id: m for m in stub.ListModels(pb.ListModelsRequest(), timeout=10).models}
    assert {"double", "lipsync", "typed", "strings", "spare"} <= set(models)
    assert models["spare"].state == "UNLOADED" and not models["spare"].loaded
    assert list(models["spare"].versions) == ["1"]

    loaded = stub.LoadModel(pb.LoadModelRequest(model_id="spare"), timeout=30)
    assert loaded.success and loaded.model.loaded and loaded.model.state == "READY"
    assert loaded.model.device == "cpu" and loaded.model.gpu_id == -1
    assert loaded.load_time_ms > 0  # it was UNLOADED, so this call waited for a real load

    stats = stub.GetModelStats(pb.GetModelStatsRequest(model_id="spare"), timeout=10)
    (spare,) = stats.models
    assert spare.model_id == "spare" and spare.state == "READY"
    assert spare.loads == 1
    assert stats.server.loaded_models >= 1
    assert stats.server.eviction_policy == "lru"
    assert [d.id for d in stats.server.devices] == ["cpu"]

    unloaded = stub.UnloadModel(pb.UnloadModelRequest(model_id="spare"), timeout=30)
    assert unloaded.success and not unloaded.model.loaded and unloaded.model.state == "UNLOADED"


def test_model_stats_track_usage(stub: pb_grpc.InferenceServiceStub) -> None:
    visual, audio = lipsync_batch(2, seed=3)
    stub.InferBatch(seed_request("lipsync", visual, audio), timeout=30)
    before = stub.GetModelStats(pb.GetModelStatsRequest(model_id="lipsync"), timeout=10).models[0]
    stub.InferBatch(seed_request("lipsync", visual, audio), timeout=30)
    after = stub.GetModelStats(pb.GetModelStatsRequest(model_id="lipsync"), timeout=10).models[0]
    assert after.usage_count == before.usage_count + 1
    assert after.inference_count == before.inference_count + 1
    assert after.avg_inference_ms > 0
    assert time.time() - 60 < after.last_used_unix <= time.time() + 1
    assert after.memory_mb > 0
    everything = stub.GetModelStats(pb.GetModelStatsRequest(), timeout=10)
    assert {"lipsync", "double"} <= {m.model_id for m in everything.models}
    assert everything.server.total_memory_mb > 0


def test_health(stub: pb_grpc.InferenceServiceStub) -> None:
    health = stub.Health(pb.HealthRequest(), timeout=10)
    assert health.healthy and health.ready
    assert health.uptime_s > 0
    assert not health.failed_models and not health.preload_pending


def test_seed_request_errors(stub: pb_grpc.InferenceServiceStub) -> None:
    visual, audio = lipsync_batch(2)
    cases = {
        "odd byte count": pb.InferBatchRequest(model_id="lipsync", visual_frames=b"\0" * 7, audio_features=audio.tobytes(), batch_size=2),
        "batch_size disagrees": pb.InferBatchRequest(model_id="lipsync", visual_frames=visual.tobytes(), audio_features=audio.tobytes(), batch_size=3),
        "no batch_size": pb.InferBatchRequest(model_id="lipsync", visual_frames=visual.tobytes(), audio_features=audio.tobytes()),
        "no audio": pb.InferBatchRequest(model_id="lipsync", visual_frames=visual.tobytes(), batch_size=2),
        "no inputs at all": pb.InferBatchRequest(model_id="lipsync"),
        "audio for a one-input model": pb.InferBatchRequest(
            model_id="double", visual_frames=np.zeros((1, 4), np.float32).tobytes(), audio_features=b"\0" * 4, batch_size=1
        ),
    }
    both = seed_request("lipsync", visual, audio)
    both.inputs.add(name="visual", datatype="FP32", shape=visual.shape, data=visual.tobytes())
    cases["seed fields and named inputs"] = both
    for what, request in cases.items():
        with pytest.raises(grpc.RpcError) as raised:
            stub.InferBatch(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
    wrong_audio = np.zeros((2, *AUDIO_ITEM[:-1], 5), dtype=np.float32)
    with pytest.raises(grpc.RpcError) as raised:
        stub.InferBatch(seed_request("lipsync", visual, wrong_audio), timeout=30)
    assert "audio_features holds 1280 float32 values" in (raised.value.details() or "")


def test_management_errors(stub: pb_grpc.InferenceServiceStub) -> None:
    for call, request in (
        (stub.LoadModel, pb.LoadModelRequest(model_id="ghost")),
        (stub.UnloadModel, pb.UnloadModelRequest(model_id="ghost")),
        (stub.GetModelStats, pb.GetModelStatsRequest(model_id="ghost")),
        (stub.LoadModel, pb.LoadModelRequest(model_id="spare", version="9")),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND, request
    with pytest.raises(grpc.RpcError) as raised:
        stub.LoadModel(pb.LoadModelRequest(), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
