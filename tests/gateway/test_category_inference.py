"""Category inference asks the embedding stage what it embeds with: text prompts with a CLIP, image neighbours
alone with an images-only encoder (EfficientNet-Lite0, the offline default), never a refused EmbedTexts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from services.common.images import ImageLimits, ImageStore
from services.common.stage_client import Deadline
from services.gateway.config import GatewaySettings
from services.gateway.core import Inspector
from services.gateway.domain import EncoderInfo


class _Clients:
    """The stage calls category inference makes, recorded; `texts` is what the embedding stage's Info says."""

    def __init__(self, texts: bool) -> None:
        self.texts = texts
        self.calls: list[str] = []
        self.prompts: list[str] = []

    async def embedding_info(self, deadline: Deadline) -> EncoderInfo:
        self.calls.append("Info")
        return EncoderInfo("clip" if self.texts else "efficientnet_lite0[...]", 4, self.texts, self.texts)

    async def stats(self, line_id: str, dataset: str, category: str, deadline: Deadline) -> SimpleNamespace:
        self.calls.append("Stats")
        return SimpleNamespace(categories=["round_part", "screw"])

    async def embed_texts(self, texts: list[str], deadline: Deadline) -> list[list[float]]:
        self.calls.append("EmbedTexts")
        self.prompts.extend(texts)
        return [[float(i), 1.0, 0.0, 0.0] for i in range(len(texts))]


def _vectors_twice(tmp_path: Path, clients: _Clients) -> list[dict[str, list[float]]]:
    inspector = Inspector(clients, None, GatewaySettings(), ImageStore(str(tmp_path)), ImageLimits())  # type: ignore[arg-type]

    async def go() -> list[dict[str, list[float]]]:
        deadline = Deadline.after_ms(5000)
        return [await inspector._category_text_vectors("line-a", "", deadline) for _ in range(2)]

    return asyncio.run(go())


def test_a_clip_votes_with_text_prompts_of_the_lines_categories(tmp_path: Path) -> None:
    clients = _Clients(texts=True)
    first, second = _vectors_twice(tmp_path, clients)
    assert list(first) == ["round_part", "screw"] and first == second
    assert clients.prompts == ["a photo of a round part", "a photo of a screw"]
    assert clients.calls == ["Info", "Stats", "EmbedTexts"]  # the second call is served from the cache


def test_an_images_only_encoder_votes_on_image_neighbours_and_is_never_asked_for_texts(tmp_path: Path) -> None:
    clients = _Clients(texts=False)
    assert _vectors_twice(tmp_path, clients) == [{}, {}]
    assert clients.calls == ["Info"]  # asked once, then cached; no EmbedTexts to be refused
