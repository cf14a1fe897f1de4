"""Serve application builders: the Serve YAML's `import_path` names one, its `args` are that builder's model.

One application per stage, each serving its gRPC service through Serve's gRPC
proxy (routed by the `application` metadata). Python and YAML share one schema:
Serve validates a YAML's `args` against the builder's pydantic annotation, and
tests/deploy validates every shipped YAML the same way.

    applications:
      - name: embedding
        import_path: deploy.apps:embedding_app
        args: {config_path: /etc/echo/echo.yaml, settings: {embedding: {max_batch_size: 64}}}

Settings precedence inside a replica is the usual one: ECHO_IAD__* environment
variables, then `settings`, then the file at `config_path`, then defaults.
(No `from __future__ import annotations` here: Serve reads the builders'
annotations at run time.)
"""

from typing import Any

from ray.serve import Application

from deploy.args import GatewayArgs, StageArgs
from deploy.deployments import (
    DecisionDeployment,
    EmbeddingDeployment,
    EvidenceDeployment,
    InspectorDeployment,
    KnowledgeDeployment,
    RetrievalDeployment,
)


def _args(model: type[StageArgs], args: Any) -> Any:
    # Serve converts the YAML dict itself; Python callers may pass a dict too.
    return args if isinstance(args, model) else model.model_validate(args or {})


def embedding_app(args: StageArgs) -> Application:
    """The Embedding service (open_clip; `@serve.batch`)."""
    return EmbeddingDeployment.bind(_args(StageArgs, args))


def retrieval_app(args: StageArgs) -> Application:
    """The Retrieval service (the memory of normal images: a Qdrant server in the cluster)."""
    return RetrievalDeployment.bind(_args(StageArgs, args))


def knowledge_app(args: StageArgs) -> Application:
    """The Knowledge service (knowledge entries in Redis in the cluster)."""
    return KnowledgeDeployment.bind(_args(StageArgs, args))


def decision_app(args: StageArgs) -> Application:
    """The Decision service (the MLLM; the local backend batches with `@serve.batch`)."""
    return DecisionDeployment.bind(_args(StageArgs, args))


def evidence_app(args: StageArgs) -> Application:
    """The Evidence service (the visual evidence expert; `@serve.batch`; can take a GPU; banks in a shared store)."""
    return EvidenceDeployment.bind(_args(StageArgs, args))


def llm_app(args: StageArgs) -> Application:
    """Ray Serve LLM (vLLM) serving the decision model; the Decision app's `vllm` backend calls it by handle.

    Built from the same `decision` settings as the Decision app (model, pixel budget, images per prompt,
    replicas), so engine and prompts cannot disagree. Needs the `[gpu]` extra; GPUs come from the LLMConfig.
    """
    from services.decision.backends.vllm_serve import build_llm_app

    return build_llm_app(_args(StageArgs, args).echo_settings().decision)


def inspector_app(args: GatewayArgs) -> Application:
    """The Inspector (gateway): the only application factory-line clients call."""
    return InspectorDeployment.bind(_args(GatewayArgs, args))


BUILDERS = {
    "deploy.apps:embedding_app": StageArgs,
    "deploy.apps:retrieval_app": StageArgs,
    "deploy.apps:knowledge_app": StageArgs,
    "deploy.apps:decision_app": StageArgs,
    "deploy.apps:evidence_app": StageArgs,
    "deploy.apps:llm_app": StageArgs,
    "deploy.apps:inspector_app": GatewayArgs,
}
"""import_path -> the args model of every builder here (launch and tests validate YAML args with it)."""
GRPC_BUILDERS = frozenset(BUILDERS) - {"deploy.apps:llm_app"}
"""Builders whose application serves an echo.v1 gRPC service and grpc.health.v1 Check through the proxy."""
