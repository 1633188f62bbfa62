"""Causal language models in Hugging Face layout, served through ``transformers``.

A model folder holds ``config.json``, ``*.safetensors``, ``tokenizer.json`` (plus
``tokenizer_config.json`` with a ``chat_template``, ``generation_config.json``). It is
read offline only (``local_files_only``; ``HF_HUB_OFFLINE`` is set): nothing is fetched,
and ``trust_remote_code`` is never enabled, so only architectures that ``transformers``
itself implements load — Llama, Qwen2/Qwen3, GPT-2, Mistral and the like.

The Registry loads, measures, leases and evicts this runtime like any other. Beyond
the :class:`~berth.runtimes.base.Runtime` contract (``run`` = one forward pass,
``input_ids`` → ``logits``, which the V2 API can call), it owns a
:class:`~berth.generation.BatchScheduler`: the continuous-batching decode loop, started
at load and stopped (its sequences failed) at unload. With ``isolation: process`` this
class runs in the model's worker process and the server holds a
:class:`~berth.isolation.lm_runtime.ProcessLMRuntime` instead; both are a
:class:`LanguageModel`.

Model ``options`` (config.yaml): ``max_running`` (16), ``max_waiting`` (64),
``prefill_budget`` (2048 tokens per iteration), ``max_n`` (8), ``default_max_tokens``
(256), ``dtype`` (``float32``; ``bfloat16``/``float16`` on CUDA).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import Placement, Runtime, RuntimeInfo, Signature, TensorSpec

log = logging.getLogger("berth.runtimes.lm")

def is_lm_folder(folder: Path) -> bool:
    """A Hugging Face causal-LM folder: ``config.json`` next to ``*.safetensors``."""
    try:
        return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
    except OSError:
        return False


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class LanguageModel:
    """What the generation front ends need of a language model, wherever it runs:
    text ↔ token ids (its tokenizer and chat template), its context length and its
    scheduler. :class:`LMRuntime` (in the server) and
    :class:`~berth.isolation.lm_runtime.ProcessLMRuntime` (weights and scheduler in a
    worker process, tokenizer here) both are one."""

    tokenizer: Any = None
    chat_template: str | None = None
    context_length: int = 0
    scheduler: Any = None

    def load_tokenizer(self, folder: Path) -> None:
        _offline()
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        self.chat_template = getattr(self.tokenizer, "chat_template", None)

    def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        if not self.chat_template:
            # no template: a plain role-tagged transcript, ending where the answer goes
            lines = [f"{m['role']}: {m['content']}" for m in messages]
            return "\n".join(lines) + "\nassistant:"
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


class LMRuntime(LanguageModel, Runtime):
    backend = "lm"
    platform = "transformers_causal_lm"

    def __init__(self, path: Path, placement: Placement, options: Any = None) -> None:
        super().__init__(path, placement, options)
        self.folder = path if path.is_dir() else path.parent
        self.model: Any = None
        self.eos_ids: frozenset[int] = frozenset()
        self._signature: Signature | None = None
        self._details: dict[str, Any] = {}

    @classmethod
    def prepare(cls, framework_device: str) -> None:
        _offline()
        import torch  # noqa: F401
        import transformers  # noqa: F401 - its import is framework start-up, not model memory
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    # ── load / unload ──────────────────────────────────────────────────────
    def load(self) -> None:
        _offline()
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from ..generation import BatchScheduler

        from .torch import use_torch_threads

        opts = self.options
        use_torch_threads(opts.get("torch_threads"))
        device = torch.device(self.placement.framework_device)
        config = AutoConfig.from_pretrained(self.folder, local_files_only=True, trust_remote_code=False)
        dtype_name = str(opts.get("dtype", "float32"))
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype_name)
        if dtype is None:
            raise ValueError(f"options.dtype must be float32, bfloat16 or float16, not {dtype_name!r}")
        self.load_tokenizer(self.folder)
        model = AutoModelForCausalLM.from_pretrained(
            self.folder, local_files_only=True, trust_remote_code=False, dtype=dtype, attn_implementation="sdpa",
        )
        self.model = model.to(device).eval()
        self.context_length = int(
            getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 2048
        )
        self.eos_ids = frozenset(self._eos_ids(config))
        vocab = int(getattr(config, "vocab_size", -1) or -1)
        self._signature = Signature(
            inputs=(TensorSpec("input_ids", np.dtype(np.int64), (-1, -1)),),
            outputs=(TensorSpec("logits", np.dtype(np.float32), (-1, -1, vocab)),),
        )
        self._details = {
            "architecture": (getattr(config, "architectures", None) or [type(model).__name__])[0],
            "model_type": getattr(config, "model_type", None),
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "context_length": self.context_length,
            "vocab_size": vocab,
            "dtype": dtype_name,
            "chat_template": self.chat_template is not None,
            "reasoning": bool(self.chat_template and "<think>" in self.chat_template),
            "torch_threads": torch.get_num_threads(),
        }
        self.scheduler = BatchScheduler(
            self.folder.parent.name if self.folder.name.isdigit() else self.folder.name,
            self.model,
            self.decode,
            self.eos_ids,
            self.context_length,
            device=device,
            max_running=int(opts.get("max_running", 16)),
            max_waiting=int(opts.get("max_waiting", 64)),
            prefill_budget=int(opts.get("prefill_budget", 2048)),
        )
        self._warm_generation()
        self.scheduler.start()

    def _eos_ids(self, config: Any) -> set[int]:
        ids: set[int] = set()
        sources: list[Any] = [getattr(config, "eos_token_id", None), getattr(self.tokenizer, "eos_token_id", None)]
        generation_config = getattr(self.model, "generation_config", None)
        if generation_config is not None:
            sources.append(getattr(generation_config, "eos_token_id", None))
        for value in sources:
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return ids

    def _warm_generation(self) -> None:
        """One prefill and a few batched decode steps, on this thread, before serving."""
        from ..generation import SamplingParams, Sequence

        scheduler = self.scheduler
        prompt = self.encode("warm up", add_special_tokens=True)[:8] or [0]
        seqs = [Sequence(i, prompt, SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True), lambda d: None) for i in range(2)]
        for seq in seqs:
            seq.decode, seq.eos_ids, seq.max_length = self.decode, self.eos_ids, self.context_length
        import torch

        with torch.inference_mode():
            for seq in seqs:
                scheduler._prefill(seq)
            while scheduler._running:
                scheduler._decode_step()
                scheduler._retire()
        for key in scheduler.counters:
            scheduler.counters[key] = 0

    def healthy(self) -> bool:
        return self.scheduler is not None and self.scheduler.alive

    def unload(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        self.scheduler = None
        self.model = None
        self.tokenizer = None

    # ── the Runtime contract ───────────────────────────────────────────────
    @property
    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    def run(self, inputs: Any) -> dict[str, np.ndarray]:
        import torch

        ids = torch.as_tensor(np.asarray(inputs["input_ids"], dtype=np.int64), device=self.model.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, use_cache=False).logits
        return {"logits": logits.float().cpu().numpy()}

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(
            backend=self.backend, platform=self.platform,
            accelerated=self.placement.framework_device.startswith("cuda"), details=dict(self._details),
        )

    def device_memory_bytes(self) -> int | None:
        if not self.placement.framework_device.startswith("cuda"):
            return None
        import torch

        return int(torch.cuda.memory_allocated(torch.device(self.placement.framework_device)))
