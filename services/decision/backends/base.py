"""What every LLM backend offers the Decision Maker: complete one ChatPrompt."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.decision.prompt import ChatPrompt, prompt_text


@dataclass
class Reply:
    """A model's answer to one ChatPrompt."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    scores: dict[str, float] | None = None  # probability of each choice, when the backend exposes it


class Backend(abc.ABC):
    """An LLM that completes ChatPrompts.

    `complete` returns free text of at most prompt.max_tokens tokens, or, when
    prompt.choices is set, a reply constrained to one of the choices (as far as
    the backend can enforce it; the caller parses it either way).
    """

    name = "backend"
    model_id = ""
    max_images = 1

    @abc.abstractmethod
    async def complete(self, prompt: ChatPrompt) -> Reply:
        """Complete one prompt (the final pass when prompt.choices is set)."""

    def render(self, prompt: ChatPrompt) -> str:
        """The exact prompt as the model receives it, for traces (images named, not inlined)."""
        return prompt_text(prompt)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """Brackets one decision; a batching backend waits for open sessions to fill a batch."""
        yield

    async def close(self) -> None:
        return None
