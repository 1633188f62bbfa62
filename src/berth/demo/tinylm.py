"""Two tiny causal LMs for the OpenAI-compatible API, trained offline in about a minute.

Both are saved in the Hugging Face layout (``config.json``, ``model.safetensors``,
``tokenizer.json``, ``tokenizer_config.json`` with a Jinja ``chat_template``,
``generation_config.json``), so ``berth serve`` loads them through the same
``transformers`` code path a downloaded model takes:

- ``tinyllama``: Llama architecture (RoPE, RMSNorm, SwiGLU, grouped-query attention),
  a role-tagged chat template.
- ``tinygpt``: GPT-2 architecture (learned positions, LayerNorm, GELU), its own
  tokenizer, and a chat template that opens a ``<think>`` section, so its answers
  exercise ``reasoning_content``.

The corpus is the running interpreter's own documentation: the docstrings of the
builtins and of a few standard-library modules (Python's licence, shipped with every
Python), turned into plain text and into question/answer chats ("What does len do?"
→ the first paragraph of ``len.__doc__``). Byte-level BPE tokenizers are trained on
it with ``tokenizers``. The models are far too small to be useful; they exist so the
serving machinery (continuous batching, streaming, stop strings, sampling) runs on
real weights, real tokenizers and real chat templates.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .layout import LLM_DIR
from .repro import TRAIN_THREADS, seed_everything, torch_threads
SEQ_LEN = 128
BATCH = 16
#: fixed step counts (not a time budget) so a rebuild gives the same weights
LLAMA_STEPS = 320
GPT_STEPS = 160

END = "<|end|>"
EOT = "<|endoftext|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|developer|>", "<|tool|>"]
THINK_TOKENS = ["<think>", "</think>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
#: Qwen3-style: the generation prompt opens the thinking section
THINK_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n<think>\n{% endif %}"
)

_MODULES = (
    "os.path", "string", "math", "json", "re", "itertools", "functools", "collections", "random",
    "textwrap", "shutil", "pathlib", "datetime", "heapq", "bisect", "statistics", "fractions",
    "decimal", "operator", "copy", "glob", "fnmatch", "csv", "base64", "hashlib", "zlib", "time",
    "argparse", "logging", "threading", "queue", "subprocess", "socket", "email", "html", "uuid",
)


@dataclass
class LmResult:
    name: str
    architecture: str
    parameters: int
    steps: int
    final_loss: float
    train_s: float
    files: dict[str, int]


def _first_paragraph(doc: str) -> str:
    para = doc.strip().split("\n\n")[0]
    return " ".join(para.split())[:240]


def corpus() -> tuple[list[str], list[tuple[str, str]]]:
    """(plain documentation texts, (question, answer) pairs) from the interpreter's docstrings."""
    texts: list[str] = []
    pairs: list[tuple[str, str]] = []
    seen: set[int] = set()

    def visit(qualname: str, obj: Any) -> None:
        doc = inspect.getdoc(obj)
        if not doc or id(doc) in seen or len(doc) < 20:
            return
        seen.add(id(doc))
        texts.append(doc)
        pairs.append((qualname, _first_paragraph(doc)))

    for name in sorted(dir(builtins)):
        if not name.startswith("_"):
            visit(name, getattr(builtins, name))
    for module_name in _MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if module.__doc__:
            texts.append(inspect.cleandoc(module.__doc__))
        for name in sorted(vars(module)):
            obj = getattr(module, name)
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                continue
            visit(f"{module_name}.{name}", obj)
    return texts, pairs


def chat_text(question: str, answer: str, *, think: bool) -> str:
    thought = f"<think>\nThe user asks about {question}.\n</think>\n" if think else ""
    return f"<|user|>\nWhat does {question} do?{END}\n<|assistant|>\n{thought}{answer}{END}\n"


def train_tokenizer(texts: list[str], vocab_size: int, *, think: bool) -> Any:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = [EOT, END, *ROLE_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if think:
        # added but not special (as Qwen3 does): decoding keeps them, so answers can be split
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    return tokenizer


def _token_stream(tokenizer: Any, documents: list[str], eot: int) -> torch.Tensor:
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(documents):
        ids.extend(encoding.ids)
        ids.append(eot)
    return torch.tensor(ids, dtype=torch.long)


def _train(model: torch.nn.Module, data: torch.Tensor, steps: int, generator: torch.Generator, lr: float) -> float:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)
    loss_value = float("nan")
    n = data.numel() - SEQ_LEN - 1
    for step in range(steps):
        scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        for group in optimizer.param_groups:
            group["lr"] = lr * max(0.05, scale)
        starts = torch.randint(0, n, (BATCH,), generator=generator)
        batch = torch.stack([data[s : s + SEQ_LEN] for s in starts.tolist()])
        out = model(input_ids=batch, labels=batch)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss_value = float(out.loss.detach())
    model.eval()
    return loss_value


def _save(model: Any, tokenizer: Any, folder: Path, *, template: str, think: bool, eos: int, pad: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.config.eos_token_id = eos
    model.config.pad_token_id = pad
    model.config.bos_token_id = None
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": END,
        "pad_token": EOT,
        "unk_token": None,
        "bos_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model.config.max_position_embeddings if hasattr(model.config, "max_position_embeddings") else model.config.n_positions,
        "additional_special_tokens": list(ROLE_TOKENS),
        "chat_template": template,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": END, "pad_token": EOT, "additional_special_tokens": tokenizer_config["additional_special_tokens"]}, indent=2) + "\n",
        encoding="utf-8",
    )
    generation = {"eos_token_id": eos, "pad_token_id": pad, "do_sample": False, "max_new_tokens": 128}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")


def _build_one(
    name: str, folder: Path, texts: list[str], pairs: list[tuple[str, str]], *, vocab: int, think: bool,
    make_model: Callable[[int], Any], steps: int, lr: float, seed: int,
) -> LmResult:
    generator = seed_everything(seed)
    chats = [chat_text(q, a, think=think) for q, a in pairs]
    tokenizer = train_tokenizer(texts + chats, vocab, think=think)
    eot, end = tokenizer.token_to_id(EOT), tokenizer.token_to_id(END)
    documents = texts + chats * 2  # chats twice: the chat format is what the API exercises most
    random.Random(seed).shuffle(documents)
    data = _token_stream(tokenizer, documents, eot)
    torch.manual_seed(seed)
    model = make_model(tokenizer.get_vocab_size())
    started = time.perf_counter()
    with torch_threads(TRAIN_THREADS):  # one thread: see repro.py (a busy core stalls two)
        loss = _train(model, data, steps, generator, lr)
    train_s = time.perf_counter() - started
    _save(model, tokenizer, folder, template=THINK_TEMPLATE if think else CHAT_TEMPLATE, think=think, eos=end, pad=eot)
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir())}
    return LmResult(
        name=name, architecture=type(model).__name__, parameters=sum(p.numel() for p in model.parameters()),
        steps=steps, final_loss=round(loss, 4), train_s=round(train_s, 2), files=files,
    )


def _llama(vocab: int) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_theta=10000.0, attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config)


def _gpt2(vocab: int) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab, n_positions=512, n_embd=96, n_layer=3, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=None, eos_token_id=None, attn_implementation="sdpa",
    )
    return GPT2LMHeadModel(config)


def build(root: Path, log: Callable[[str], Any] = print) -> dict[str, LmResult]:
    """Train both LMs into ``root/llm/models/<name>/1/``; return what was built."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    texts, pairs = corpus()
    log(f"tinylm: corpus of {len(texts)} docstrings and {len(pairs)} question/answer chats")
    models_dir = root / LLM_DIR / "models"
    results = {}
    results["tinyllama"] = _build_one(
        "tinyllama", models_dir / "tinyllama" / "1", texts, pairs, vocab=2048, think=False,
        make_model=_llama, steps=LLAMA_STEPS, lr=3e-3, seed=7,
    )
    log(f"tinylm: tinyllama trained, loss {results['tinyllama'].final_loss} in {results['tinyllama'].train_s} s")
    results["tinygpt"] = _build_one(
        "tinygpt", models_dir / "tinygpt" / "1", texts, pairs, vocab=1536, think=True,
        make_model=_gpt2, steps=GPT_STEPS, lr=3e-3, seed=11,
    )
    log(f"tinylm: tinygpt trained, loss {results['tinygpt'].final_loss} in {results['tinygpt'].train_s} s")
    for name, result in results.items():
        _write_model_config(models_dir / name, result)
    _write_server_config(root / LLM_DIR)
    return results


def _write_model_config(folder: Path, result: LmResult) -> None:
    weights_mb = result.files["model.safetensors"] / 2**20
    text = (
        f"# {result.name}: a tiny {result.architecture} written by `berth demo build`\n"
        "backend: lm\n"
        f"memory_estimate_mb: {max(64, math.ceil(weights_mb * 4 + 48))}\n"
        f"description: \"tiny {result.architecture} ({result.parameters} parameters) trained on Python docstrings\"\n"
        "options:\n"
        "  max_running: 16        # sequences decoded together (the continuous batch)\n"
        "  max_waiting: 64        # queued sequences; more answer 429\n"
        "  default_max_tokens: 64\n"
    )
    (folder / "config.yaml").write_text(text, encoding="utf-8")


def _write_server_config(folder: Path) -> None:
    text = (
        "# berth serve --config var/demo/llm/berth.yaml: the demo LMs behind /v1 plus the digits classifier\n"
        "server:\n"
        "  host: 127.0.0.1\n"
        "  http_port: 8080\n"
        "  grpc_port: 50051\n"
        "repository: models\n"
        "default_model: digits\n"
        "capacity:\n"
        "  max_models: 4\n"
        "  eviction_policy: lru\n"
        "models:\n"
        "  digits:\n"
        "    model_path: ../models/digits/1/model.onnx\n"
        "  tinyllama:\n"
        "    preload: true\n"
    )
    (folder / "berth.yaml").write_text(text, encoding="utf-8")


__all__ = ["CHAT_TEMPLATE", "LLM_DIR", "THINK_TEMPLATE", "LmResult", "build", "corpus"]
