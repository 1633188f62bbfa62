#!/usr/bin/env python3
"""Seed 001's example client, against berth (start the server with `make run`).

    python examples/streaming_client.py                 # all six examples
    python examples/streaming_client.py --example 4     # one of them
    python examples/streaming_client.py --stream --duration 30 --fps 30
    python examples/streaming_client.py --stream --duration 10 --no-tensorrt
    python examples/streaming_client.py --url http://192.168.1.100:8080 --stream

The examples live in ``berth.client.cli`` (also ``python -m berth.client``); the
client class is ``berth.client.StreamingInferenceClient``:

    from berth.client import StreamingInferenceClient

    client = StreamingInferenceClient("http://127.0.0.1:8080")
    print(client.health_check())
    result = client.single_inference_tensorrt()
    print(f"Prediction: {result['prediction']}, Latency: {result['latency_ms']}ms")
    client.stream_inference(duration_seconds=10.0, use_tensorrt=True, fps=30, callback=print)
"""

import sys

from berth.client.cli import main

if __name__ == "__main__":
    sys.exit(main())
