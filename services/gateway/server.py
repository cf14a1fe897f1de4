"""Bootstrap of the gateway stage (the Inspector): built from its own settings section, like every stage.

The Inspector reads two sections: its own (planning, fan-out, stage addresses) and the audit's (it writes the
audit log); from the others it needs three facts, passed as arguments: where images are kept, the image limits
the stages enforce, and the largest message. services/stages.py reads them from the settings tree; the embedded
server (app/embedded.py) hosts this stage beside the others.
"""

from __future__ import annotations

import logging

from services.audit.config import AuditSettings
from services.common.auth import read_secret
from services.common.images import ImageLimits, ImageStore
from services.common.inprocess import InProcessChannel
from services.common.serving import Stage
from services.gateway.audit import AuditTrail
from services.gateway.clients import StageClients
from services.gateway.config import GatewaySettings
from services.gateway.core import Inspector
from services.gateway.planner import QuestionTypeClassifier
from services.gateway.servicer import InspectorServicer, register

log = logging.getLogger(__name__)
SERVICE_NAME = "echo.v1.Inspector"
STAGE_TOKEN_ENV = "ECHO_IAD_STAGE_TOKEN"
SHARED_METHODS = ("GetKnowledge",)  # a product type's knowledge belongs to no line: any valid token reads it


def build_classifier() -> QuestionTypeClassifier:
    """Rules, the MiniLM prototype classifier (loaded lazily on the first free-form question) and option evidence
    that knows the shipped knowledge base's defect and product names."""
    from services.gateway.option_evidence import name_vocabulary
    from services.knowledge.embedder import get_embedder
    from services.knowledge.entries import default_root, load_dir

    entries = load_dir(default_root()).values()
    return QuestionTypeClassifier(
        embed=lambda texts: get_embedder().encode(list(texts)),
        defect_names=name_vocabulary(x for e in entries for d in e.defects for x in (d.name, d.display_name)),
        product_names=name_vocabulary(x for e in entries for x in (e.category, e.display_name)),
    )


def build_inspector(
    settings: GatewaySettings,
    default_address: str,
    *,
    image_store: ImageStore,
    limits: ImageLimits,
    max_message_mb: int,
    keep_evidence_images: bool,
    token: str | None = None,
    local: InProcessChannel | None = None,
) -> Inspector:
    """The Inspector over its stage clients.

    Args:
        settings: the gateway section.
        default_address: where a stage with no address of its own is served.
        image_store: where the memory's images are kept (the retrieval stage's image store).
        limits: what the stages refuse; the gateway refuses it first, before any fan-out.
        max_message_mb: the largest gRPC message (the server section's).
        keep_evidence_images: keep each evidence image for the audit log.
        token: what it sends the stages (None: settings.stage_token_file or $ECHO_IAD_STAGE_TOKEN, the
            cluster's way; the embedded server mints its own).
        local: an in-process channel to this process's own stages.
    """
    if token is None:
        token = read_secret(settings.stage_token_file, STAGE_TOKEN_ENV)
    clients = StageClients(settings, default_address, max_message_mb, local=local, token=token)
    return Inspector(
        clients=clients,
        classifier=build_classifier(),
        settings=settings,
        image_store=image_store,
        limits=limits,
        keep_evidence_images=keep_evidence_images,
    )


def open_audit(settings: AuditSettings, image_store: ImageStore) -> AuditTrail | None:
    """The audit trail (files: recovered and locked; redis: durability checked); None with audit.enabled off."""
    if not settings.enabled:
        return None
    audit = AuditTrail.open(settings, image_store)
    log.info("audit log: %s", audit.log.description)
    return audit


def stage_for(servicer: InspectorServicer) -> Stage:
    """The Inspector as a hostable stage (public: clients call it; GetKnowledge open to any line's token)."""
    return Stage(SERVICE_NAME, servicer, register, public=True, shared_methods=SHARED_METHODS)


def build_stage(
    settings: GatewaySettings,
    audit: AuditSettings,
    default_address: str,
    *,
    image_store: ImageStore,
    limits: ImageLimits,
    max_message_mb: int,
) -> Stage:
    """The Inspector alone, its stages at the addresses in `settings` (cluster mode); arguments as build_inspector's,
    `audit` the audit section (the trail it writes)."""
    inspector = build_inspector(
        settings,
        default_address,
        image_store=image_store,
        limits=limits,
        max_message_mb=max_message_mb,
        keep_evidence_images=audit.enabled and settings.audit_evidence_images,
    )
    return stage_for(InspectorServicer(inspector, open_audit(audit, image_store)))
