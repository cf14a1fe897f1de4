"""The evidence stage over a real socket: health, bank management, analysis, statuses for bad input."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from echo.v1 import common_pb2, evidence_pb2, evidence_pb2_grpc
from services.common.images import sha256_hex
from services.common.serving import channel_options, start_server
from services.config import load_settings
from services.evidence.server import SERVICE_NAME, build_stage
from tests.evidence.conftest import DATASET, INPUT, Product


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[evidence_pb2_grpc.EvidenceStub]:
    settings = load_settings(
        None, data_dir=str(tmp_path), evidence={"device": "cpu", "input_size": INPUT, "auto_config": False}
    )
    stage = await build_stage(settings.evidence, settings.embedding)
    server, port, _ = await start_server([stage], "127.0.0.1", 0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options()) as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        yield evidence_pb2_grpc.EvidenceStub(ch)
    await server.stop(0)
    await stage.close()
    assert (tmp_path / "evidence").is_dir()  # banks follow data_dir


def images(datas: list[bytes]) -> list[common_pb2.Image]:
    return [common_pb2.Image(data=d) for d in datas]


async def test_a_product_is_onboarded_analyzed_listed_and_deleted_over_grpc(
    stub: evidence_pb2_grpc.EvidenceStub, fabric: Product, tmp_path: Path
) -> None:
    add = await stub.AddNormalImages(
        evidence_pb2.AddBankImagesRequest(
            line_id="line-7", dataset=DATASET, category="woven_fabric", images=images(fabric.normals)
        )
    )
    assert add.added == len(fabric.normals) and add.bank.calibration.policy == "gumbel"
    path = tmp_path / "bad.png"
    path.write_bytes(fabric.defective[0].image)
    resp = await stub.Analyze(
        evidence_pb2.AnalyzeRequest(
            line_id="line-7",
            dataset=DATASET,
            category="woven_fabric",
            image=common_pb2.Image(uri=str(path)),
            options=evidence_pb2.AnalyzeOptions(return_heatmap=True, return_overlay=True, max_boxes=2),
        )
    )
    assert resp.anomalous and resp.score > resp.threshold == pytest.approx(add.bank.calibration.threshold)
    assert resp.band == "fail" and add.bank.calibration.method == "kfold"
    assert resp.review_threshold == pytest.approx(add.bank.calibration.review_threshold)
    assert resp.review_threshold < resp.threshold
    assert resp.boxes[0].region == fabric.defective[0].region and len(resp.boxes) <= 2
    assert Image.open(io.BytesIO(resp.heatmap.png)).size == (resp.heatmap.width, resp.heatmap.height) == (128, 128)
    assert resp.heatmap.scale == pytest.approx(2 * resp.threshold)
    assert Image.open(io.BytesIO(resp.overlay_png)).mode == "RGB"
    assert resp.backbone_id.startswith("efficientnet_lite0[") and resp.compute_ms > 0 and resp.bank_images == 8
    assert "ANOMALOUS" in resp.summary
    stats = await stub.BankStats(evidence_pb2.BankStatsRequest(line_id="line-7"))
    assert [(b.category, b.images) for b in stats.banks] == [("woven_fabric", 8)]
    assert stats.backbone_id == resp.backbone_id
    record = stats.banks[0].self_config  # the fixture's stage has auto_config off: it says so
    assert record.status == "off" and record.chosen.startswith("blocks=2,4/") and not record.candidates
    # 8 images, under evidence.global_min_images: the global score has global_small_share (0.1) of the 1% budget
    assert stats.banks[0].global_calibration.far_target == pytest.approx(0.001)
    assert resp.fired in ("local", "both") and resp.local_score > 0 and resp.global_threshold > 0
    gone = await stub.DeleteBank(
        evidence_pb2.DeleteBankRequest(line_id="line-7", dataset=DATASET, category="woven_fabric")
    )
    assert gone.deleted_images == 8
    assert not (await stub.BankStats(evidence_pb2.BankStatsRequest())).banks


async def test_defects_are_added_classified_and_removed_over_grpc(
    stub: evidence_pb2_grpc.EvidenceStub, fabric: Product
) -> None:
    where = {"line_id": "line-7", "dataset": DATASET, "category": "woven_fabric"}
    await stub.AddNormalImages(evidence_pb2.AddBankImagesRequest(**where, images=images(fabric.normals)))
    for d in fabric.defective:  # no box: the evidence's top box on the image
        added = await stub.AddDefect(
            evidence_pb2.AddDefectRequest(**where, image=common_pb2.Image(data=d.image), defect_type=d.defect)
        )
        assert added.added and added.entry.box.x1 > added.entry.box.x0
    assert dict(added.types) == {d.defect: 1 for d in fabric.defective} and added.library_size == 3
    d = fabric.defective[0]
    res = await stub.ClassifyDefect(
        evidence_pb2.ClassifyDefectRequest(**where, image=common_pb2.Image(data=d.image), return_nearest_image=True)
    )
    assert res.defect_type == d.defect and res.nearest_image == d.image and res.nearest.sha256 == sha256_hex(d.image)
    assert res.votes[0].defect_type == d.defect and res.library_size == 3
    gone = await stub.RemoveDefect(evidence_pb2.RemoveDefectRequest(**where, sha256=res.nearest.sha256))
    assert (gone.removed, gone.library_size) == (1, 2)


BAD_REQUESTS = [
    (
        evidence_pb2.AddDefectRequest(
            dataset=DATASET, category="screw", image=common_pb2.Image(data=b"x"), defect_type="crack"
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "no evidence bank for line 'default', dataset 'Synthetic', category 'screw': add normal images",
    ),
    (
        evidence_pb2.AddDefectRequest(dataset=DATASET, category="screw", image=common_pb2.Image(data=b"x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        'defect_type: "" is not a defect type',
    ),
    (
        evidence_pb2.AddDefectRequest(dataset=DATASET, category="screw", defect_type="crack"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "image: is missing",
    ),
    (
        evidence_pb2.ClassifyDefectRequest(dataset=DATASET, category="screw", image=common_pb2.Image(data=b"")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "image: data is empty",
    ),
    (
        evidence_pb2.RemoveDefectRequest(dataset=DATASET, category="screw", sha256="abc"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "sha256:",
    ),
    (
        evidence_pb2.AnalyzeRequest(dataset=DATASET, category="screw", image=common_pb2.Image(data=b"x")),
        grpc.StatusCode.FAILED_PRECONDITION,
        "no evidence bank for line 'default', dataset 'Synthetic', category 'screw': add normal images",
    ),
    (
        evidence_pb2.AnalyzeRequest(dataset=DATASET, category="screw"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "image: is missing",
    ),
    (
        evidence_pb2.AnalyzeRequest(
            dataset=DATASET,
            category="screw",
            image=common_pb2.Image(data=b"x"),
            options=evidence_pb2.AnalyzeOptions(max_boxes=-1),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "options.max_boxes: is -1",
    ),
    (
        evidence_pb2.AnalyzeRequest(category="screw", image=common_pb2.Image(data=b"x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "dataset: is required",
    ),
    (
        evidence_pb2.AddBankImagesRequest(dataset=DATASET, category="screw", images=[common_pb2.Image()]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "images[0]: is missing",
    ),
    (
        evidence_pb2.AddBankImagesRequest(
            dataset=DATASET, category="screw", images=[common_pb2.Image(data=b"not an image")]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "images[0]: cannot be decoded as an image",
    ),
    (
        evidence_pb2.AddBankImagesRequest(dataset=DATASET, category="screw"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "images: is empty",
    ),
    (
        evidence_pb2.DeleteBankRequest(line_id="a/b", dataset=DATASET, category="screw"),
        grpc.StatusCode.INVALID_ARGUMENT,
        'line_id: "a/b" is not a valid name',
    ),
]


async def test_bad_requests_get_a_status_naming_the_field(stub: evidence_pb2_grpc.EvidenceStub) -> None:
    methods = {
        evidence_pb2.AnalyzeRequest: stub.Analyze,
        evidence_pb2.AddBankImagesRequest: stub.AddNormalImages,
        evidence_pb2.DeleteBankRequest: stub.DeleteBank,
        evidence_pb2.AddDefectRequest: stub.AddDefect,
        evidence_pb2.RemoveDefectRequest: stub.RemoveDefect,
        evidence_pb2.ClassifyDefectRequest: stub.ClassifyDefect,
    }
    for request, code, message in BAD_REQUESTS:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await methods[type(request)](request)
        assert (e.value.code(), message in e.value.details()) == (code, True), e.value.details()
