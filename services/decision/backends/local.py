"""The local transformers backend: Qwen2-VL (real weights or the offline test model) on CPU or GPU.

Requests go through the model's own processor and chat template. Concurrent
requests share one forward or generate call (left padding) via the batcher the
backend is built with (the asyncio MicroBatcher, or `@serve.batch` in a
replica). A constrained pass does not sample: it reads the next-token logits
of the final position and takes the argmax over the choices' token ids,
which also yields each choice's probability (used by true/false).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Hashable
from typing import Any

from services.common.batching import Batcher, BatcherFactory, MicroBatcher
from services.common.errors import ConfigError, InvalidArgument
from services.decision.backends.base import Backend, Reply
from services.decision.config import DecisionSettings
from services.decision.offline_model import resolve_model
from services.decision.prompt import ChatPrompt, hf_messages

log = logging.getLogger(__name__)

CHOOSE = ("choose",)


class LocalModel:
    """A loaded model + processor, with the blocking batch calls. Shared by backends (and tests)."""

    def __init__(self, model: Any, processor: Any, *, model_id: str, max_model_len: int) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # batched generation appends on the right
        self.model_id = model_id
        self.max_model_len = max_model_len
        self.device = next(model.parameters()).device
        gen = model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        pad = gen.pad_token_id if gen.pad_token_id is not None else self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else next(iter(self.eos_ids))
        self._choice_ids: dict[tuple[str, ...], list[int]] = {}

    @classmethod
    def load(cls, settings: DecisionSettings) -> LocalModel:
        """Load settings.model (building the offline model on first use) with the pixel budget of the settings."""
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        path = resolve_model(settings.model, settings.model_cache, seed=settings.seed)
        device = settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("decision.device is cuda but no CUDA device is visible")
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            settings.dtype, torch.bfloat16 if device == "cuda" else torch.float32
        )
        try:
            # The processor's budget is ours, so an image fitted by preprocess.py passes through unchanged.
            size = {"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels}
            processor = AutoProcessor.from_pretrained(path, size=size)
            model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(device).eval()
        except OSError as e:
            raise ConfigError(f"decision.model: cannot load {settings.model!r} from {path}: {e}") from e
        log.info("decision model %s loaded on %s (%s)", settings.model, device, dtype)
        return cls(model, processor, model_id=settings.model, max_model_len=settings.max_model_len)

    def render(self, prompt: ChatPrompt) -> str:
        """The chat-template text the processor expands (one image placeholder per image)."""
        return self.processor.apply_chat_template(hf_messages(prompt), tokenize=False, add_generation_prompt=True)

    def choice_ids(self, choices: tuple[str, ...]) -> list[int]:
        """The single token id of each choice (the letters, Yes/No); refuses choices that are not one token."""
        ids = self._choice_ids.get(choices)
        if ids is None:
            ids = []
            for c in choices:
                tok = self.tokenizer.encode(c, add_special_tokens=False)
                if len(tok) != 1:
                    raise InvalidArgument(f"choice {c!r} is {len(tok)} tokens; constrained answers must be one token")
                ids.append(tok[0])
            if len(set(ids)) != len(ids):
                raise InvalidArgument(f"choices {choices} share a token")
            self._choice_ids[choices] = ids
        return ids

    def _encode(self, prompts: list[ChatPrompt], texts: list[str]) -> Any:
        images = [img for p in prompts for img in p.images]
        return self.processor(text=texts, images=images or None, padding=True, return_tensors="pt").to(self.device)

    def run_batch(
        self,
        key: Hashable,
        prompts: list[ChatPrompt],
        abandoned: Callable[[], bool] | None = None,
        *,
        max_model_len: int | None = None,
    ) -> list[Reply | Exception]:
        """One forward (key CHOOSE) or one generate call (key ("generate", n)) over the batch.

        A prompt whose tokens plus the new ones exceed the context gets its own InvalidArgument; the rest run.
        Generation stops early once `abandoned()` says every caller has given up.
        """
        limit = max_model_len or self.max_model_len
        new_tokens = 1 if key == CHOOSE else int(key[1])  # type: ignore[index]
        texts = [self.render(p) for p in prompts]
        enc = self._encode(prompts, texts)
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        results: list[Reply | Exception | None] = [None] * len(prompts)
        keep = []
        for i, n in enumerate(lengths):
            if n + new_tokens > limit:
                results[i] = InvalidArgument(
                    f"is {n} tokens + {new_tokens} new, over the model's context of {limit} tokens "
                    "(decision.max_model_len)",
                    field="prompt",
                )
            else:
                keep.append(i)
        if len(keep) < len(prompts):
            if not keep:
                return results  # type: ignore[return-value]
            prompts_k, texts_k = [prompts[i] for i in keep], [texts[i] for i in keep]
            enc = self._encode(prompts_k, texts_k)
        else:
            prompts_k = prompts
        if key == CHOOSE:
            replies = self._choose(prompts_k, enc)
        else:
            replies = self._generate(prompts_k, enc, new_tokens, abandoned)
        for i, r in zip(keep, replies, strict=True):
            results[i] = r
        return results  # type: ignore[return-value]

    def _choose(self, prompts: list[ChatPrompt], enc: Any) -> list[Reply]:
        torch = self.torch
        with torch.inference_mode():
            logits = self.model(**enc, logits_to_keep=1).logits[:, -1, :].float()
        n_prompt = enc["attention_mask"].sum(dim=1).tolist()
        out = []
        for row, p in enumerate(prompts):
            ids = self.choice_ids(p.choices)
            probs = torch.softmax(logits[row, ids], dim=-1).tolist()
            best = max(range(len(ids)), key=probs.__getitem__)
            out.append(Reply(p.choices[best], int(n_prompt[row]), 1, dict(zip(p.choices, probs, strict=True))))
        return out

    def _generate(
        self, prompts: list[ChatPrompt], enc: Any, max_new_tokens: int, abandoned: Callable[[], bool] | None
    ) -> list[Reply]:
        from transformers import StoppingCriteria, StoppingCriteriaList

        torch = self.torch

        class StopWhenAbandoned(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                stop = bool(abandoned and abandoned())
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.pad_id,
                use_cache=True,
                stopping_criteria=StoppingCriteriaList([StopWhenAbandoned()]),
            )
        start = enc["input_ids"].shape[1]
        n_prompt = enc["attention_mask"].sum(dim=1).tolist()
        replies = []
        for row in range(len(prompts)):
            toks = out[row, start:].tolist()
            n = next((i + 1 for i, t in enumerate(toks) if t in self.eos_ids), len(toks))
            text = self.tokenizer.decode(toks[:n], skip_special_tokens=True).strip()
            replies.append(Reply(text, int(n_prompt[row]), n))
        return replies


class TransformersBackend(Backend):
    """A LocalModel behind a batcher; a batch waits only for decisions in flight (fill="sessions").

    Args:
        batcher_factory: how concurrent prompts are batched (default: the asyncio MicroBatcher; a Serve
            replica passes `@serve.batch`'s).
    """

    name = "transformers"

    def __init__(
        self,
        model: LocalModel,
        *,
        max_images: int,
        max_model_len: int | None = None,
        max_batch_size: int = 8,
        max_wait_ms: float = 10.0,
        batcher_factory: BatcherFactory = MicroBatcher,
    ) -> None:
        self.model = model
        self.model_id = model.model_id
        self.max_images = max_images
        self.batcher: Batcher = batcher_factory(
            functools.partial(model.run_batch, max_model_len=max_model_len),
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            stage="decision",
            fill="sessions",
        )

    @classmethod
    def from_settings(
        cls,
        settings: DecisionSettings,
        model: LocalModel | None = None,
        batcher_factory: BatcherFactory = MicroBatcher,
    ) -> TransformersBackend:
        return cls(
            model or LocalModel.load(settings),
            max_images=settings.max_images,
            max_model_len=settings.max_model_len,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            batcher_factory=batcher_factory,
        )

    async def complete(self, prompt: ChatPrompt) -> Reply:
        key: Hashable = CHOOSE if prompt.choices else ("generate", prompt.max_tokens)
        return await self.batcher.submit(prompt, key)

    def render(self, prompt: ChatPrompt) -> str:
        return self.model.render(prompt)

    def session(self) -> Any:
        return self.batcher.session()

    async def close(self) -> None:
        await self.batcher.close()
