"""Locust users for each stage alone, called as the gateway calls it: the stage's capacity without the rest.

    locust -f loadtests/locust/stages.py EmbeddingUser --headless -u 8 -r 8 -t 60s --host 127.0.0.1:50051 \
        --data ./echo-data/demo/dataset --line demo-line

Pick a stage by its user's name (EmbeddingUser, RetrievalUser, KnowledgeUser, DecisionUser); with none
named, all four run at once. With --ray each goes to its own application through Serve's proxy. Options as
loadtests/locust/locustfile.py's; RetrievalUser searches the memory of --line (build it first, or pass --onboard).
"""

from __future__ import annotations

import hashlib

from locust import task

from echo.v1 import (
    common_pb2,
    decision_pb2,
    decision_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    knowledge_pb2,
    knowledge_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)
from loadtests.locust.grpc_user import GrpcUser, Stages, line_ids, reasoning_types
from services.common.enums import QUESTION_TYPE_ENUM

__all__ = ["DecisionUser", "EmbeddingUser", "KnowledgeUser", "RetrievalUser", "Stages"]


def question(text: str, options: dict[str, str], qtype: str) -> common_pb2.Question:
    return common_pb2.Question(text=text, options=options, type=QUESTION_TYPE_ENUM[qtype])


class EmbeddingUser(GrpcUser):
    """The CLIP image tower: one query image per call, as the gateway sends it."""

    service = "embedding"

    def on_start(self) -> None:
        self.stub = embedding_pb2_grpc.EmbeddingStub(self.channel)
        super().on_start()

    @task
    def embed(self) -> None:
        ask = self.next_ask()
        request = embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=ask.image)])
        self.call(self.stub.EmbedImages, request, "EmbedImages")


_VECTORS: dict[bytes, list[float]] = {}  # query image -> its embedding, shared by the retrieval users


class RetrievalUser(GrpcUser):
    """The memory: a top-1 reference search within the line's product, the query image excluded."""

    service = "retrieval"

    def on_start(self) -> None:
        lines = line_ids(self.opts)
        self.line = lines[self.number % len(lines)]
        self.stub = retrieval_pb2_grpc.RetrievalStub(self.channel)
        # vectors come from the embedding stage once, outside the measured calls
        self.embedding = embedding_pb2_grpc.EmbeddingStub(self.client.channel)
        super().on_start()

    def vector(self, image: bytes) -> list[float]:
        if image not in _VECTORS:
            metadata = tuple((k, "embedding" if k == "application" else v) for k, v in self.client.metadata or ())
            resp = self.embedding.EmbedImages(
                embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=image)]),
                timeout=60,
                metadata=metadata or None,
            )
            _VECTORS[image] = list(resp.embeddings[0].values)
        return _VECTORS[image]

    @task
    def search(self) -> None:
        ask = self.next_ask()
        request = retrieval_pb2.SearchRequest(
            vector=self.vector(ask.image),
            line_id=self.line,
            dataset=ask.dataset,
            category=ask.category,
            k=1,
            mode=common_pb2.ONE_SHOT_SIMILAR,
            exclude_sha256=hashlib.sha256(ask.image).hexdigest(),
        )
        self.call(self.stub.Search, request, "Search")


class KnowledgeUser(GrpcUser):
    """The Knowledge Guide: context-specific knowledge for the question."""

    service = "knowledge"

    def on_start(self) -> None:
        self.stub = knowledge_pb2_grpc.KnowledgeStub(self.channel)
        super().on_start()

    @task
    def context(self) -> None:
        ask = self.next_ask()
        request = knowledge_pb2.GetContextRequest(
            dataset=ask.dataset,
            category=ask.category,
            question=question(ask.text, ask.options, ask.type),
            mode=common_pb2.CONTEXT_SPECIFIC,
        )
        self.call(self.stub.GetContext, request, "GetContext")


class DecisionUser(GrpcUser):
    """The MLLM: the query and one normal reference, with the reasoning pass where the expert map has it."""

    service = "decision"

    def on_start(self) -> None:
        self.stub = decision_pb2_grpc.DecisionStub(self.channel)
        self.reasoning = reasoning_types()
        super().on_start()

    @task
    def decide(self) -> None:
        ask = self.next_ask()
        request = decision_pb2.DecideRequest(
            query_image=common_pb2.Image(data=ask.image),
            reference_images=[common_pb2.Image(data=ask.reference)],
            question=question(ask.text, ask.options, ask.type),
            reasoning=ask.type in self.reasoning,
            category=ask.category,
        )
        self.call(self.stub.Decide, request, f"Decide {ask.type}")
