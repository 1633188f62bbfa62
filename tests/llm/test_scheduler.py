"""The continuous-batching engine in-process: batched greedy output equals ``generate()``.

No server here: the LM runtime is loaded directly from the demo folder, sequences of
different prompt lengths are submitted together (so they share decode steps with
left-padded caches, join mid-flight and leave early), and each one's tokens must equal
``model.generate()`` run on that prompt alone.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from berth.generation import SamplingParams, Sequence
from berth.generation.reasoning import ReasoningSplitter
from berth.runtimes.base import Placement
from berth.runtimes.lm import LMRuntime
from llm_fixtures import GPT, LLAMA, lm_dir
from waiting import wait_until

PROMPTS = [
    "Return the number of items",
    "def",
    "The",
    "Split the string at the last occurrence of sep, and return a 3-tuple containing",
    "<|user|>\nWhat does len do?<|end|>\n<|assistant|>\n",
    "Create a new dictionary with keys from iterable",
]


@pytest.fixture(scope="module", params=[LLAMA, GPT])
def runtime(request: pytest.FixtureRequest, demo_dir: Path):
    rt = LMRuntime(lm_dir(demo_dir, request.param) / "1", Placement("cpu"), {"max_running": 4, "max_waiting": 16})
    rt.load()
    yield rt
    rt.unload()


def _run(rt: LMRuntime, prompts: list[list[int]], params: list[SamplingParams], stagger: bool = False) -> list[Sequence]:
    done = threading.Semaphore(0)
    seqs = [Sequence(i, p, sp, lambda d: d.finish_reason and done.release()) for i, (p, sp) in enumerate(zip(prompts, params))]
    if stagger:  # join while others run
        rt.scheduler.submit(seqs[:2])
        done.acquire(timeout=60)
        rt.scheduler.submit(seqs[2:])
        for _ in seqs[1:]:
            assert done.acquire(timeout=60)
    else:
        rt.scheduler.submit(seqs)
        for _ in seqs:
            assert done.acquire(timeout=60)
    return seqs


def _reference(rt: LMRuntime, ids: list[int], n: int) -> list[int]:
    """Greedy decoding by definition: the full sequence through the model, no cache."""
    seq = list(ids)
    with torch.inference_mode():
        for _ in range(n):
            seq.append(int(rt.model(torch.tensor([seq])).logits[0, -1].argmax()))
    out = seq[len(ids):]
    if not set(out) & rt.eos_ids:  # transformers' own generate() agrees where no EOS intervenes
        with torch.inference_mode():
            gen = rt.model.generate(
                torch.tensor([ids]), attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                max_new_tokens=n, do_sample=False, pad_token_id=0,
            )
        assert gen[0, len(ids):].tolist() == out
    return out


def _is_idle(rt: LMRuntime) -> bool:
    stats = rt.scheduler.stats()
    return stats["running"] == 0 and stats["waiting"] == 0


@pytest.mark.parametrize("stagger", [False, True])
def test_batched_greedy_equals_generate(runtime: LMRuntime, stagger: bool) -> None:
    prompts = [runtime.encode(p, add_special_tokens=True) for p in PROMPTS]
    lengths = [12, 20, 7, 16, 20, 9]  # sequences leave the batch at different steps
    params = [SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True) for n in lengths]
    seqs = _run(runtime, prompts, params, stagger=stagger)
    stats = runtime.scheduler.stats()
    assert stats["mean_batch_size"] > 1.5, stats  # really batched (max_running 4)
    for seq, ids, n in zip(seqs, prompts, lengths):
        assert seq.finish_reason == "length"
        assert seq.output_ids == _reference(runtime, ids, n), f"prompt {seq.index} differs under batching"
    wait_until(lambda: _is_idle(runtime), timeout=5, what="the scheduler to go idle")


def test_same_seed_same_sample(runtime: LMRuntime) -> None:
    ids = runtime.encode("The", add_special_tokens=True)
    params = [SamplingParams(max_tokens=16, temperature=1.0, top_p=0.9, seed=s, ignore_eos=True) for s in (1, 1, 2, 1)]
    seqs = _run(runtime, [ids] * 4, params)
    assert seqs[0].output_ids == seqs[1].output_ids == seqs[3].output_ids
    assert seqs[2].output_ids != seqs[0].output_ids


def test_stop_string_is_cut(runtime: LMRuntime) -> None:
    ids = runtime.encode("Return the number of items", add_special_tokens=True)
    [free] = _run(runtime, [ids], [SamplingParams(max_tokens=30, temperature=0.0, ignore_eos=True)])
    text = free.text
    assert len(text) > 10
    stop = text[5:8]
    [cut] = _run(runtime, [ids], [SamplingParams(max_tokens=30, temperature=0.0, ignore_eos=True, stop=(stop,))])
    assert cut.finish_reason == "stop"
    assert cut.text == text[: text.index(stop)]


def test_abort_leaves_within_a_step(runtime: LMRuntime) -> None:
    ids = runtime.encode("The", add_special_tokens=True)
    got = threading.Event()
    finished = threading.Event()

    def emit(delta) -> None:
        got.set()
        if delta.finish_reason:
            finished.set()

    seq = Sequence(0, ids, SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True), emit)
    runtime.scheduler.submit([seq])
    assert got.wait(30)
    runtime.scheduler.abort([seq])
    assert finished.wait(5)
    assert seq.finish_reason == "abort"
    assert len(seq.output_ids) < 400
    wait_until(lambda: _is_idle(runtime), timeout=5, what="the scheduler to go idle")


def test_reasoning_splitter() -> None:
    s = ReasoningSplitter(in_reasoning=True)
    parts = [s.feed(t) for t in ["I think", " so</thi", "nk>\nAnswer", " here"]] + [s.feed("", final=True)]
    reasoning = "".join(p[0] for p in parts)
    content = "".join(p[1] for p in parts)
    assert (reasoning, content) == ("I think so", "Answer here")
    s = ReasoningSplitter(in_reasoning=False)
    parts = [s.feed(t) for t in ["<th", "ink>why</think>", "what"]]
    assert "".join(p[0] for p in parts) == "why" and "".join(p[1] for p in parts) == "what"
    s = ReasoningSplitter(in_reasoning=False)
    assert s.feed("plain answer", final=True) == ("", "plain answer")
    s = ReasoningSplitter(in_reasoning=True)  # the prompt opened <think> and the model repeats it
    parts = [s.feed(t) for t in ["<thi", "nk>\nhmm", "</think>ok"]]
    assert "".join(p[0] for p in parts) == "hmm" and "".join(p[1] for p in parts) == "ok"


def test_a_callback_that_raises_fails_its_step_not_the_decode_loop(runtime: LMRuntime) -> None:
    """A sequence whose event callback raises (even when told it failed) must not take
    the decode loop down with it: its batch-mates are told, and later requests run."""
    ids = runtime.encode("The", add_special_tokens=True)
    told = threading.Semaphore(0)

    def broken(_delta: object) -> None:
        raise RuntimeError("a callback that always raises")

    bad = Sequence(0, ids, SamplingParams(8, 0.0, ignore_eos=True), broken)
    mate = Sequence(1, ids, SamplingParams(8, 0.0, ignore_eos=True), lambda d: d.finish_reason and told.release())
    runtime.scheduler.submit([bad, mate])
    assert told.acquire(timeout=60), "the batch-mate was never told how it ended"
    assert mate.finished and runtime.scheduler.alive
    (after,) = _run(runtime, [ids], [SamplingParams(8, 0.0, ignore_eos=True)])
    assert after.finish_reason == "length" and len(after.output_ids) == 8
