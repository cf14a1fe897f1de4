"""Fixtures of the decision tests: the offline Qwen2-VL, built once per session, loaded once, real everywhere."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from services.common.ports import free_port
from services.decision.backends.local import LocalModel, TransformersBackend
from services.decision.config import DecisionSettings
from services.decision.core import DecisionMaker
from services.decision.offline_model import OFFLINE_MODEL, resolve_model


def random_png(seed: int, size: int | tuple[int, int] = 56) -> bytes:
    """A random RGB image (width x height), PNG-encoded."""
    w, h = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def png() -> Callable[..., bytes]:
    """png(seed, size=56) -> a random RGB image as PNG bytes; size is an int or (width, height)."""
    return random_png


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def offline_model_dir(model_cache: Path) -> Path:
    """The offline test model, built through the same path the stage uses on first start."""
    return Path(resolve_model(OFFLINE_MODEL, str(model_cache), seed=0))


@pytest.fixture(scope="session")
def settings(model_cache: Path, offline_model_dir: Path) -> DecisionSettings:
    return DecisionSettings(model_cache=str(model_cache), device="cpu", max_images=4, max_model_len=2048)


@pytest.fixture(scope="session")
def local_model(settings: DecisionSettings) -> LocalModel:
    return LocalModel.load(settings)


@pytest.fixture
async def maker(settings: DecisionSettings, local_model: LocalModel) -> AsyncIterator[DecisionMaker]:
    """A Decision Maker over the local backend; its batcher lives on this test's event loop."""
    dm = DecisionMaker(TransformersBackend.from_settings(settings, local_model), settings)
    yield dm
    await dm.close()


@pytest.fixture
async def patient_maker(settings: DecisionSettings, local_model: LocalModel) -> AsyncIterator[DecisionMaker]:
    """As `maker`, but the batcher waits up to 5 s for every open decision to queue (batch shapes are then
    deterministic on a loaded machine; the wait ends as soon as all are in)."""
    s = settings.model_copy(update={"max_wait_ms": 5000.0})
    dm = DecisionMaker(TransformersBackend.from_settings(s, local_model), s)
    yield dm
    await dm.close()


@pytest.fixture(scope="session")
def served(offline_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`transformers serve` pinned to the offline model folder, on a free loopback port; yields its /v1 URL.

    One per session: the OpenAI-backend tests and the knowledge-refiner tests share it."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    exe = Path(sys.executable).with_name("transformers")
    cmd = [str(exe), "serve", str(offline_model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"transformers serve not ready in 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
