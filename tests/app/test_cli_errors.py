"""What a plant engineer sees when something is wrong: one line (status, message, what to do) and an exit code.

`echo-iad` runs as a real process against a real embedded server on a loopback port
(with a small pixel limit, so a limit can be hit with a small image), or against a
port where nothing listens.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_product_cli import KNOWLEDGE  # a knowledge YAML for a brake disc

from app.background import BackgroundServer
from services.client.errors import ExitCode
from services.common.images import encode_png
from services.common.ports import free_port
from services.mmad.synth import render_normal

MAX_PIXELS = 100_000  # the server's embedding.max_image_pixels here; the synthetic parts are 256x256


def echo_iad(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *map(str, args)], capture_output=True, text=True, timeout=180
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line: the last line on stderr, with no traceback before it."""
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, offline_model_cache: Path) -> Iterator[BackgroundServer]:
    from services.config import load_settings

    settings = load_settings(
        data_dir=str(tmp_path_factory.mktemp("state")),
        server={"port": 0},
        embedding={"max_image_pixels": MAX_PIXELS},
        decision={"model_cache": str(offline_model_cache)},
    )
    with BackgroundServer(settings) as srv:
        yield srv


def _png(path: Path, seed: int, size: int = 256) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(render_normal("round_part", np.random.default_rng(seed)).resize((size, size))))
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """Three good images and one file that is not an image."""
    for i in range(3):
        _png(tmp_path / "good" / f"{i}.png", i)
    (tmp_path / "good" / "notes.png").write_text("not an image")
    return tmp_path / "good"


def test_no_server_at_the_address(tmp_path: Path) -> None:
    port = free_port()
    image = _png(tmp_path / "part.png", 0)
    result = echo_iad("inspect", image, "-q", "Is there any defect?", "--server", f"127.0.0.1:{port}")
    assert result.returncode == ExitCode.NO_SERVER
    assert error_line(result) == (
        f"error: UNAVAILABLE: no Echo-IAD server at 127.0.0.1:{port}: is `echo-iad serve` running?"
    )
    debug = echo_iad("--debug", "inspect", image, "-q", "Is there any defect?", "--server", f"127.0.0.1:{port}")
    assert debug.returncode == ExitCode.NO_SERVER and "Traceback" in debug.stderr  # --debug shows it


def test_an_address_without_a_port_means_50051() -> None:
    from services.client import InspectorClient
    from services.client.client import with_default_port

    assert [with_default_port(a) for a in ("10.0.0.7", "inspector.plant", "::1", "[::1]", "h:9000")] == [
        "10.0.0.7:50051", "inspector.plant:50051", "[::1]:50051", "[::1]:50051", "h:9000",
    ]  # fmt: skip
    with InspectorClient("127.0.0.1") as client:
        assert client.address == "127.0.0.1:50051"


def test_an_image_over_a_limit_names_the_setting(server: BackgroundServer, tmp_path: Path) -> None:
    big = _png(tmp_path / "big.png", 1, size=400)
    result = echo_iad("inspect", big, "-q", "Is there any defect?", "--line", "l1", "--server", server.address)
    assert result.returncode == ExitCode.LIMIT
    assert error_line(result) == (
        f"error: INVALID_ARGUMENT: image ({big}): is 400x400 = 160000 pixels, over the limit of {MAX_PIXELS} "
        "(embedding.max_image_pixels): send less, or raise `embedding.max_image_pixels` in the server's settings"
    )


def test_an_image_that_cannot_be_read_names_the_file(server: BackgroundServer, tmp_path: Path) -> None:
    bad = tmp_path / "part.png"
    bad.write_bytes(b"\x89PNG but not really")
    result = echo_iad("inspect", bad, "-q", "Is there any defect?", "--server", server.address)
    assert result.returncode == ExitCode.BAD_INPUT
    line = error_line(result)
    assert line.startswith(f"error: INVALID_ARGUMENT: image ({bad}): cannot be decoded as an image")
    assert line.endswith(": fix the named field or file and try again")
    assert "0x" not in line and "BytesIO" not in line  # no object repr in a message


def test_a_missing_file_is_one_error_line_not_a_usage_box(tmp_path: Path) -> None:
    part, entry, folder = tmp_path / "no-such-part.png", tmp_path / "no-such-entry.yaml", tmp_path / "no-such-folder"
    for missing, args in (
        (part, ("inspect", part, "-q", "Is there any defect?")),
        (entry, ("knowledge", "put", entry)),
        (folder, ("product", "add", "--line", "l1", "--category", "disc", "--normal-dir", folder)),
    ):
        result = echo_iad(*args)
        assert result.returncode == ExitCode.BAD_INPUT, result.stderr
        assert result.stderr.splitlines() == [
            f"error: INVALID_ARGUMENT: {missing}: no such file or folder: check the path"
        ], result.stderr


def test_a_line_without_memory_says_what_to_do(server: BackgroundServer, tmp_path: Path) -> None:
    image = _png(tmp_path / "part.png", 0)
    result = echo_iad("inspect", image, "-q", "Is there any defect?", "--line", "empty-line", "--category", "disc",
                      "--server", server.address)  # fmt: skip
    assert result.returncode == ExitCode.PRECONDITION
    line = error_line(result)
    assert line == (
        "error: FAILED_PRECONDITION: retrieval stage: FAILED_PRECONDITION: memory for line 'empty-line', category "
        "'disc' is empty: add normal images first (`echo-iad memory build` or `echo-iad product add`)"
    )


def test_product_add_names_each_bad_file_and_adds_nothing(server: BackgroundServer, folder: Path) -> None:
    result = echo_iad("product", "add", "--line", "l-bad", "--category", "disc", "--normal-dir", folder,
                      "--server", server.address)  # fmt: skip
    assert result.returncode == ExitCode.BAD_INPUT
    assert f"bad file {folder / 'notes.png'}: cannot be decoded as an image" in result.stderr
    assert error_line(result) == (
        f"error: INVALID_ARGUMENT: 1 of 4 files under {folder} are not usable images (listed above); nothing was "
        "added: fix or remove them, or pass --skip-bad to add the others"
    )
    lines = echo_iad("product", "add", "--category", "disc", "--normal-dir", folder, "--server", server.address)
    assert "l-bad" not in lines.stderr


def test_product_add_skip_bad_adds_the_rest_with_a_summary(server: BackgroundServer, folder: Path) -> None:
    _png(folder / "huge.png", 5, size=400)  # readable, but over the server's pixel limit: the server refuses it
    result = echo_iad("product", "add", "--line", "l-skip", "--category", "disc", "--normal-dir", folder,
                      "--skip-bad", "--server", server.address)  # fmt: skip
    assert result.returncode == ExitCode.OK, result.stderr
    assert f"skipped {folder / 'notes.png'}: cannot be decoded as an image" in result.stderr
    assert f"skipped {folder / 'huge.png'}: is 400x400 = 160000 pixels, over the limit of {MAX_PIXELS}" in result.stderr
    assert "memory: 3 added, 0 already present for line=l-skip Custom/disc; 2 bad files skipped" in result.stdout


def test_product_add_refuses_knowledge_for_another_product(server: BackgroundServer, folder: Path) -> None:
    yaml_file = folder.parent / "disc.yaml"
    yaml_file.write_text("category: brake-disc\n" + KNOWLEDGE)
    result = echo_iad("product", "add", "--line", "l-kb", "--category", "brake_disc", "--normal-dir", folder,
                      "--skip-bad", "--knowledge", yaml_file, "--server", server.address)  # fmt: skip
    assert result.returncode == ExitCode.BAD_INPUT
    assert error_line(result) == (
        f"error: INVALID_ARGUMENT: knowledge file {yaml_file} is for category 'brake-disc' but --category is "
        "'brake_disc': make them agree (edit the file's `category:` or change --category)"
    )
    yaml_file.write_text("dataset: VisA\n" + KNOWLEDGE)
    result = echo_iad("product", "add", "--line", "l-kb", "--category", "brake_disc", "--normal-dir", folder,
                      "--skip-bad", "--knowledge", yaml_file, "--server", server.address)  # fmt: skip
    assert "is for dataset 'VisA' but --dataset is 'Custom'" in error_line(result)
    yaml_file.write_text(KNOWLEDGE.replace("    cause: Thermal stress.\n", ""))
    result = echo_iad("product", "add", "--line", "l-kb", "--category", "brake_disc", "--normal-dir", folder,
                      "--skip-bad", "--knowledge", yaml_file, "--server", server.address)  # fmt: skip
    assert result.returncode == ExitCode.BAD_INPUT
    assert f"knowledge file {yaml_file}: defects.crack.cause: is required" in error_line(result)
    listing = echo_iad("product", "check", "--line", "l-kb", "--category", "brake_disc", "--server", server.address)
    assert "normal images   0" in listing.stdout  # nothing was added by the refused runs


def test_a_forgotten_line_lists_the_lines_and_check_needs_the_knowledge_it_was_given(
    server: BackgroundServer, folder: Path
) -> None:
    (folder / "notes.png").unlink()
    assert echo_iad("product", "add", "--line", "l-lines", "--category", "disc", "--normal-dir", folder,
                    "--server", server.address).returncode == 0  # fmt: skip
    result = echo_iad("product", "check", "--category", "disc", "--server", server.address)
    assert result.returncode == ExitCode.USAGE
    line = error_line(result)
    assert line.startswith(f"error: USAGE: --line is required: lines on {server.address}: ")
    assert "l-lines (Custom/disc)" in line and line.endswith("; name one with --line")

    yaml_file = folder.parent / "disc.yaml"
    yaml_file.write_text(KNOWLEDGE)
    check = echo_iad("product", "check", "--line", "l-lines", "--category", "disc", "--knowledge", yaml_file,
                     "--server", server.address)  # fmt: skip
    assert check.returncode == ExitCode.NOT_READY
    assert f"knowledge       missing (given in {yaml_file})" in check.stdout and "NOT READY" in check.stdout
    assert (
        echo_iad("product", "check", "--line", "l-lines", "--category", "disc", "--server", server.address).returncode
        == 0
    )  # fmt: skip  (knowledge is optional when not given)


def test_local_configuration_errors_name_the_file(tmp_path: Path) -> None:
    result = echo_iad("serve", "--config", tmp_path / "missing.yaml")
    assert result.returncode == ExitCode.CONFIG
    assert error_line(result) == (
        f"error: CONFIG: config file {tmp_path / 'missing.yaml'} does not exist: fix the file or variable it names"
    )
    result = echo_iad("serve", "--ray", "local-gpu")
    assert result.returncode == ExitCode.CONFIG
    assert "no Serve config 'local-gpu': not a file here, nor a packaged config (local-cpu, " in error_line(result)


class _Refusal:
    """What a grpc.RpcError offers explain_rpc_error: a status and the server's message."""

    def __init__(self, status: str, details: str) -> None:
        import grpc

        self._code, self._details = getattr(grpc.StatusCode, status), details

    def code(self):  # type: ignore[no-untyped-def]
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("status", "details", "hint"),
    [
        (
            "PERMISSION_DENIED",
            "token 'camera-r' lacks the right review: true (confirming an inspection teaches the product; line "
            "tokens cannot)",
            "lacks `review: true`",
        ),
        ("PERMISSION_DENIED", "line_id: token 'camera-r' may not use line 'line-9'", "the token is valid but may not"),
        ("UNAUTHENTICATED", "the bearer token is not valid for this server", "the server refused these credentials"),
    ],
)
def test_a_refusal_hint_names_what_is_missing_not_just_refused_credentials(
    status: str, details: str, hint: str
) -> None:
    from services.client.errors import explain_rpc_error

    problem = explain_rpc_error(_Refusal(status, details), "127.0.0.1:50051")
    assert problem.exit_code == ExitCode.DENIED and problem.message == details and hint in problem.hint
    assert ("refused these credentials" in problem.line()) == (status == "UNAUTHENTICATED")
