"""``python -m berth.client``: seed 001's example client as a command line.

    python -m berth.client                      # run every example against the server
    python -m berth.client --example 4          # one of them (1-6, see --help)
    python -m berth.client --stream --duration 30 --fps 30
    python -m berth.client --stream --duration 10 --no-tensorrt
    python -m berth.client --url http://192.168.1.100:8080 --stream
    python -m berth.client --grpc 127.0.0.1:50051 --model emg   # health, models, one inference over gRPC
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from typing import Any, Callable, Sequence

import httpx

from ._async import AsyncClient
from ._common import DEFAULT_URL, BerthClientError, GrpcError, StreamError
from ._sync import Client


def print_event(event: dict[str, Any]) -> None:
    if "prediction" in event:
        gesture = event.get("gesture") or event["prediction"]
        print(f"frame {event['frame']:>5}  {gesture!s:<11} {event['confidence']:7.2%}  "
              f"{event['latency_ms']:7.3f} ms  {event['backend']}  late {event.get('late_ms', 0):.1f} ms")
    elif "status" in event:
        print(f"completed: {event['total_frames']} frames in {event['duration_seconds']:.2f} s "
              f"({event['avg_fps']:.2f} fps), missed {event.get('missed_frames', 0)}, dropped {event.get('dropped_events', 0)}")
    elif "error" in event:
        print(f"stream error at frame {event.get('frame')}: {event['error']}")


def _example_health(client: Client, args: argparse.Namespace) -> None:
    print(client.health_check())


def _example_single(client: Client, args: argparse.Namespace) -> None:
    print(client.single_inference(batch=1, channels=16, length=200, steps=1))


def _example_accelerated(client: Client, args: argparse.Namespace) -> None:
    result = client.single_inference_tensorrt()
    print(f"prediction {result['prediction']}, confidence {result['confidence']}, "
          f"latency {result['latency_ms']} ms on {result['backend']}")


def _example_stream(client: Client, args: argparse.Namespace) -> None:
    client.stream_inference(duration_seconds=args.duration or 5.0, use_tensorrt=not args.no_tensorrt, fps=args.fps, callback=print_event)


def _example_callback(client: Client, args: argparse.Namespace) -> None:
    seen: Counter[str] = Counter()

    def count(event: dict[str, Any]) -> None:
        if "prediction" in event:
            seen[str(event.get("gesture") or event["prediction"])] += 1

    summary = client.stream_inference(duration_seconds=args.duration or 3.0, use_tensorrt=not args.no_tensorrt, fps=args.fps, callback=count)
    print(f"{summary['total_frames']} frames; predictions: {dict(seen.most_common())}")


def _example_async_and_benchmark(client: Client, args: argparse.Namespace) -> None:
    async def run() -> None:
        async with AsyncClient(client.base_url, api_key=args.api_key) as aclient:
            health, stats = await asyncio.gather(aclient.health_check(), aclient.stream_stats())
            print(f"async: status {health['status']}, measured latency {stats['expected_latency_ms']} ms")

    asyncio.run(run())
    result = client.benchmark(num_iterations=200)
    for key in ("pytorch", "onnxruntime", "accelerated"):
        row = result[key]
        if "error" in row:
            print(f"{key:<12} {row['error']}")
        else:
            print(f"{key:<12} {row['backend']:<17} mean {row['mean_latency_ms']:.3f} ms  p99 {row['p99_latency_ms']:.3f} ms  "
                  f"{row['throughput_qps']:.0f} qps")


EXAMPLES: dict[int, tuple[str, Callable[[Client, argparse.Namespace], None]]] = {
    1: ("health check", _example_health),
    2: ("single inference (PyTorch)", _example_single),
    3: ("single inference (accelerated: TensorRT when present)", _example_accelerated),
    4: ("streaming inference, printing every frame", _example_stream),
    5: ("streaming with a custom callback", _example_callback),
    6: ("async client, stream stats and benchmark", _example_async_and_benchmark),
}


def build_parser() -> argparse.ArgumentParser:
    listing = "; ".join(f"{n}: {title}" for n, (title, _) in EXAMPLES.items())
    parser = argparse.ArgumentParser(prog="python -m berth.client", description="berth's seed-001 streaming client", allow_abbrev=False)
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server URL (default {DEFAULT_URL})")
    parser.add_argument("--api-key", help="sent as X-API-Key (HTTP) or authorization: Bearer (gRPC) when the server requires one")
    parser.add_argument("--example", type=int, choices=sorted(EXAMPLES), help=f"run one example ({listing})")
    parser.add_argument("--stream", action="store_true", help="just stream and print predictions")
    parser.add_argument("--duration", type=float, default=None, help="stream seconds (default 10 with --stream)")
    parser.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    parser.add_argument("--no-tensorrt", action="store_true", help="use the PyTorch backend instead of the accelerated one")
    parser.add_argument("--grpc", metavar="HOST:PORT", help="talk gRPC to this address instead: health, models and one inference")
    parser.add_argument("--model", default="emg", help="the model --grpc runs (default emg); its inputs are random, -1 dims 1")
    return parser


def _grpc_main(args: argparse.Namespace) -> None:
    import numpy as np

    from ..tensors import V2_TO_NUMPY
    from ._grpc_sync import GrpcClient

    with GrpcClient(args.grpc, api_key=args.api_key) as client:
        health = client.health_check()
        print(f"== health: live {health['live']}, ready {health['ready']}, {health['loaded_models']} models loaded")
        print("== models: " + ", ".join(f"{row['model_id']} v{row['version']} {row['state']}" for row in client.list_models()))
        metadata = client.model_metadata(args.model)
        rng = np.random.default_rng(0)
        inputs = {}
        for spec in metadata["inputs"]:
            shape = [1 if dim < 0 else dim for dim in spec["shape"]]
            inputs[spec["name"]] = rng.standard_normal(shape).astype(V2_TO_NUMPY[spec["datatype"]])
        outputs = client.infer(args.model, inputs)
        for name, array in outputs.items():
            first = f", argmax of item 0: {int(array[0].argmax())}" if array.ndim and array.size and array.dtype.kind in "biuf" else ""
            print(f"== infer {args.model}: {name} {array.dtype}{list(array.shape)}{first}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.grpc:
        if args.stream or args.example:
            print("error: --grpc runs its own example; --stream and --example are HTTP only", file=sys.stderr)
            return 2
        try:
            _grpc_main(args)
        except GrpcError as exc:
            print(f"error: the gRPC call failed with {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        return 0
    try:
        with Client(args.url, api_key=args.api_key) as client:
            if args.stream:
                args.duration = 10.0 if args.duration is None else args.duration
                _example_stream(client, args)
                return 0
            chosen = [args.example] if args.example else sorted(EXAMPLES)
            for number in chosen:
                title, run = EXAMPLES[number]
                print(f"== example {number}: {title}")
                run(client, args)
    except BerthClientError as exc:
        print(f"error: the server answered {exc.status}: {exc.message}", file=sys.stderr)
        return 1
    except StreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
