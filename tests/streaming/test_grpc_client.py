"""berth.client's gRPC transport (GrpcClient, AsyncGrpcClient) against a live server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import numpy as np
import pytest

from berth.client import AsyncGrpcClient, BerthClientError, GrpcClient, GrpcError, StreamError
from berth.client.cli import main as cli_main
from conftest import BerthServer
from models import softmax, write_linear_softmax, write_lipsync_model, write_python_model



def lipsync_reference(visual: np.ndarray, audio: np.ndarray) -> np.ndarray:
    gain = audio.reshape(audio.shape[0], -1).mean(axis=1).astype(np.float32)
    return (visual[:, :3] + visual[:, 3:]) * gain[:, None, None, None]


def lipsync_batch(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 6, 8, 8)).astype(np.float32), rng.standard_normal((batch, 32, 4, 4)).astype(np.float32)


def write_repository(root: Path) -> np.ndarray:
    """lin (ONNX softmax(x @ W), x [N, 4]), lipsync, spare (y = 2x), slow (sleeps 1 s per call)."""
    weights = write_linear_softmax(root / "lin" / "1" / "model.onnx", features=4, classes=3, seed=7)
    write_lipsync_model(root / "lipsync")
    write_python_model(root / "spare")
    write_python_model(root / "slow", predict_sleep=1.0)
    return weights


class Served:
    def __init__(self, server: BerthServer, weights: np.ndarray) -> None:
        self.server, self.weights = server, weights
        self.address = f"127.0.0.1:{server.grpc_port}"

    def reference(self, x: np.ndarray) -> np.ndarray:
        return softmax(x @ self.weights)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("grpc_client")
    weights = write_repository(workdir / "models")
    server = BerthServer({"repository": str(workdir / "models"), "models": {"lin": {"preload": True}}}, workdir).start()
    try:
        yield Served(server, weights)
    finally:
        server.stop()


def rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


# ── sync ──────────────────────────────────────────────────────────────────
def test_sync_infer_equals_numpy(served: Served) -> None:
    with GrpcClient(served.address) as client:
        health = client.health_check()
        assert health["live"] and health["ready"] and health["healthy"] and health["status"] == "ok"
        x = rows(5, seed=1)
        out = client.infer("lin", {"x": x})
        assert list(out) == ["probs"] and out["probs"].dtype == np.float32 and out["probs"].shape == (5, 3)
        np.testing.assert_allclose(out["probs"], served.reference(x), rtol=1e-5)
        assert not out["probs"].flags.writeable  # a numpy.frombuffer view of the received bytes
        chosen = client.infer("lin", {"x": x[:1]}, version="1", outputs=["probs"])
        np.testing.assert_allclose(chosen["probs"], served.reference(x[:1]), rtol=1e-5)
        visual, audio = lipsync_batch(3, seed=2)
        got = client.infer("lipsync", {"visual": visual, "audio": audio})["output"]
        np.testing.assert_allclose(got, lipsync_reference(visual, audio), rtol=1e-5)
        metadata = client.model_metadata("lipsync")
        assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
            ("visual", "FP32", [-1, 6, 8, 8]), ("audio", "FP32", [-1, 32, 4, 4])]


def test_sync_stream_answers_every_request_in_order(served: Served) -> None:
    batches = [rows(1 + i % 3, seed=10 + i) for i in range(8)]
    with GrpcClient(served.address) as client:
        answers = list(client.infer_stream("lin", ({"x": x} for x in batches)))
        assert len(answers) == 8
        for x, answer in zip(batches, answers):
            assert isinstance(answer, dict)
            np.testing.assert_allclose(answer["probs"], served.reference(x), rtol=1e-5)
        # a refused request is reported in its place; the stream goes on
        mixed = [{"x": batches[0]}, {"x": np.zeros((1, 5), np.float32)}, {"x": batches[1]}]
        kept = list(client.infer_stream("lin", mixed, return_errors=True))
        assert len(kept) == 3
        np.testing.assert_allclose(kept[0]["probs"], served.reference(batches[0]), rtol=1e-5)  # type: ignore[index]
        assert isinstance(kept[1], StreamError) and set(kept[1].event) == {"index", "error"} and kept[1].event["index"] == 1
        assert "must have shape" in kept[1].event["error"], kept[1].event
        np.testing.assert_allclose(kept[2]["probs"], served.reference(batches[1]), rtol=1e-5)  # type: ignore[index]
        with pytest.raises(StreamError, match="request 1 of the stream failed"):
            list(client.infer_stream("lin", mixed))


def test_model_management_and_stats(served: Served) -> None:
    with GrpcClient(served.address) as client:
        models = {row["model_id"]: row for row in client.list_models()}
        assert models["lin"]["state"] == "READY" and models["lin"]["backend"]
        assert models["spare"]["state"] == "UNLOADED" and not models["spare"]["loaded"]
        loaded = client.load_model("spare")
        assert loaded["success"] and loaded["model"]["loaded"] and loaded["model"]["state"] == "READY"
        client.infer("spare", {"x": np.ones((2, 4), np.float32)})
        stats = client.model_stats("spare")
        (row,) = stats["models"]
        assert row["model_id"] == "spare" and row["inference_count"] >= 1 and isinstance(row["inference_count"], int)
        assert stats["server"]["loaded_models"] >= 2
        unloaded = client.unload_model("spare")
        assert unloaded["success"] and unloaded["model"]["state"] == "UNLOADED"
        every = client.model_stats()
        assert {"lin", "lipsync", "spare", "slow"} <= {r["model_id"] for r in every["models"]}


def test_infer_batch_seed_form(served: Served) -> None:
    visual, audio = lipsync_batch(4, seed=3)
    with GrpcClient(served.address) as client:
        answer = client.infer_batch("lipsync", visual, audio)
        assert answer["success"] and answer["device"] == "cpu" and answer["gpu_id"] == -1 and answer["batch_size"] >= 4
        assert answer["outputs"].shape == (4, 3, 8, 8)
        np.testing.assert_allclose(answer["outputs"], lipsync_reference(visual, audio), rtol=1e-5)
        shared = client.infer_batch("lipsync", visual, audio[:1])  # one audio window for the whole batch
        np.testing.assert_allclose(shared["outputs"], lipsync_reference(visual, np.repeat(audio[:1], 4, axis=0)), rtol=1e-5)


def test_errors_carry_the_server_message(served: Served) -> None:
    with GrpcClient(served.address) as client:
        with pytest.raises(GrpcError) as bad:
            client.infer("lin", {"x": np.zeros((2, 5), np.float32)})
        assert isinstance(bad.value, BerthClientError)
        assert bad.value.code == "INVALID_ARGUMENT" and bad.value.status == 400 and "'x'" in bad.value.message
        with pytest.raises(GrpcError) as missing:
            client.infer("nope", {"x": np.zeros((1, 4), np.float32)})
        assert missing.value.code == "NOT_FOUND" and missing.value.status == 404 and "nope" in missing.value.message
        with pytest.raises(GrpcError) as late:
            client.infer("slow", {"x": np.zeros((1, 4), np.float32)}, timeout=0.3)
        assert late.value.code == "DEADLINE_EXCEEDED" and late.value.status == 504
        with pytest.raises(BerthClientError, match="RESOURCE_EXHAUSTED"):
            with GrpcClient(served.address, max_message_size_mb=0.01) as small:  # 10 KB each way
                small.infer("lin", {"x": np.zeros((1000, 4), np.float32)})
    with pytest.raises(ValueError):
        client.infer("lin", {"x": rows(1, 0)})  # closed by the with block
    with GrpcClient("127.0.0.1:1", timeout=5) as nowhere, pytest.raises(GrpcError) as refused:
        nowhere.health_check()
    assert refused.value.code == "UNAVAILABLE" and refused.value.status == 503


# ── async ─────────────────────────────────────────────────────────────────
def test_async_client(served: Served) -> None:
    async def run() -> None:
        async with AsyncGrpcClient(served.address) as client:
            health = await client.health_check()
            assert health["live"] and health["ready"]
            batches = [rows(2, seed=20 + i) for i in range(6)]
            answers = await asyncio.gather(*(client.infer("lin", {"x": x}) for x in batches))
            for x, answer in zip(batches, answers):
                np.testing.assert_allclose(answer["probs"], served.reference(x), rtol=1e-5)

            async def frames() -> AsyncIterator[dict[str, Any]]:
                for x in batches:
                    await asyncio.sleep(0.001)
                    yield {"x": x}

            streamed = [answer async for answer in client.infer_stream("lin", frames())]
            for x, answer in zip(batches, streamed, strict=True):
                np.testing.assert_allclose(answer["probs"], served.reference(x), rtol=1e-5)  # type: ignore[index]
            visual, audio = lipsync_batch(2, seed=4)
            batch = await client.infer_batch("lipsync", visual, audio)
            np.testing.assert_allclose(batch["outputs"], lipsync_reference(visual, audio), rtol=1e-5)
            assert any(row["model_id"] == "lipsync" for row in await client.list_models())
            assert (await client.model_stats("lin"))["models"][0]["inference_count"] >= 6
            with pytest.raises(GrpcError) as bad:
                await client.infer("lipsync", {"visual": visual})
            assert bad.value.code == "INVALID_ARGUMENT" and "audio" in bad.value.message

    asyncio.run(run())


# ── credentials and the command line ──────────────────────────────────────
def test_api_key(make_server: Any, tmp_path: Path) -> None:
    write_repository(tmp_path / "models")
    server = make_server({"repository": str(tmp_path / "models"), "auth": {"api_keys": ["data-key-1"]}})
    address = f"127.0.0.1:{server.grpc_port}"
    x = rows(2, seed=5)
    with GrpcClient(address) as anonymous:
        assert anonymous.health_check()["live"]  # health is public
        with pytest.raises(GrpcError) as refused:
            anonymous.infer("lin", {"x": x})
        assert refused.value.code == "UNAUTHENTICATED" and refused.value.status == 401 and "API key" in refused.value.message
    with GrpcClient(address, api_key="data-key-1") as client:
        assert client.infer("lin", {"x": x})["probs"].shape == (2, 3)

    async def run() -> None:
        async with AsyncGrpcClient(address, api_key="data-key-1") as aclient:
            assert (await aclient.infer("lin", {"x": x}))["probs"].shape == (2, 3)
        async with AsyncGrpcClient(address, api_key="wrong") as wrong:
            with pytest.raises(GrpcError, match="UNAUTHENTICATED"):
                await wrong.infer("lin", {"x": x})

    asyncio.run(run())


def test_cli_grpc_example(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--grpc", served.address, "--model", "lin"]) == 0
    out = capsys.readouterr().out
    assert "live True" in out and "lin v1 READY" in out and "probs float32[1, 3]" in out
    assert cli_main(["--grpc", served.address, "--model", "nope"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
