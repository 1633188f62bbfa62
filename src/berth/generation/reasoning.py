"""Split ``<think>…</think>`` output into ``reasoning_content`` and ``content``.

Models whose chat template uses thinking tags (Qwen3, DeepSeek-R1 style) either open
the section in the generation prompt (the output starts inside it) or emit ``<think>``
first. The splitter is fed text deltas and returns (reasoning, content) deltas; a tag
split across deltas is held back until it is complete, so no tag text leaks out.
"""

from __future__ import annotations

OPEN = "<think>"
CLOSE = "</think>"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


class ReasoningSplitter:
    def __init__(self, *, in_reasoning: bool) -> None:
        self.in_reasoning = in_reasoning
        self._started = False  # any reasoning text seen yet
        self._after_close = False  # </think> seen
        self.seen_content = False
        self._pending = ""

    def feed(self, text: str, *, final: bool = False) -> tuple[str, str]:
        buffer = self._pending + text
        self._pending = ""
        reasoning: list[str] = []
        content: list[str] = []
        while buffer:
            if self.in_reasoning and not self._started:
                # a model may repeat the <think> its prompt already opened: drop it;
                # newlines around the tags are layout, not text
                buffer = buffer.lstrip("\n")
                if not buffer:
                    break
                stripped = buffer.lstrip()
                if stripped.startswith(OPEN):
                    buffer = stripped[len(OPEN):].lstrip("\n")
                    continue
                if not final and OPEN.startswith(stripped):
                    self._pending = buffer
                    break
                self._started = True
            if self.in_reasoning:
                at = buffer.find(CLOSE)
                if at >= 0:
                    reasoning.append(buffer[:at])
                    buffer = buffer[at + len(CLOSE):]
                    self.in_reasoning = False
                    self._after_close = True
                    continue
                keep = 0 if final else _partial_suffix(buffer, CLOSE)
                reasoning.append(buffer[: len(buffer) - keep])
                self._pending = buffer[len(buffer) - keep:]
                break
            if self._after_close and not self.seen_content:
                buffer = buffer.lstrip("\n")
                if not buffer:
                    break
            if not self.seen_content:
                stripped = buffer.lstrip()
                if stripped.startswith(OPEN):
                    buffer = stripped[len(OPEN):]
                    self.in_reasoning = True
                    self._started = False
                    continue
                if not final and OPEN.startswith(stripped):
                    self._pending = buffer  # could still become "<think>"
                    break
            self.seen_content = True
            content.append(buffer)
            break
        return "".join(reasoning), "".join(content)
