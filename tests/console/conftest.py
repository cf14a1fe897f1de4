"""An embedded server, the console in front of it (uvicorn on a free port), and Debian's headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_server import ConsoleThread
from consolekit import CHROMIUM, CHROMIUM_ARGS, LINE

from app.background import BackgroundServer
from services.console.app import ConsoleSettings


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from services.mmad.loader import load_dataset
    from services.mmad.synth import synthesize

    root = synthesize(tmp_path_factory.mktemp("synth") / "d", seed=5, categories=["screw"], per_category=4,
                      templates_per_category=4, progress=False)  # fmt: skip
    return load_dataset(root)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, offline_model_cache: Path) -> Iterator[BackgroundServer]:
    from services.config import load_settings

    settings = load_settings(
        data_dir=str(tmp_path_factory.mktemp("state")),
        server={"port": 0},
        decision={"model_cache": str(offline_model_cache)},
    )
    with BackgroundServer(settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def console(server: BackgroundServer) -> Iterator[str]:
    """The console in front of the server; yields its base URL."""
    with ConsoleThread(ConsoleSettings(server=server.address, line=LINE)) as web:
        yield web.url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium (`apt-get install chromium`) driven by Playwright; its own browser download is not used."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (the README set-up installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    try:
        yield pg
    finally:
        context.close()
