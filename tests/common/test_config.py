"""One settings tree: YAML, then environment overrides; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.config import load_settings


def test_defaults_are_the_embedded_offline_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECHO_IAD_CONFIG", raising=False)
    s = load_settings()
    assert s.mode == "embedded"
    assert s.retrieval.engine == "edge"
    assert s.knowledge.store == "files"
    assert s.server.host == "127.0.0.1"


def test_yaml_is_read_and_environment_overrides_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "echo.yaml"
    cfg.write_text("decision:\n  backend: random\n  seed: 3\nserver:\n  port: 6000\n")
    monkeypatch.setenv("ECHO_IAD__SERVER__PORT", "7000")
    s = load_settings(cfg)
    assert s.decision.backend == "random" and s.decision.seed == 3
    assert s.server.port == 7000


def test_state_paths_follow_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECHO_IAD__EVIDENCE__RUNTIME_CACHE", raising=False)  # the test run's shared cache (conftest)
    monkeypatch.delenv("ECHO_IAD__EMBEDDING__RUNTIME_CACHE", raising=False)
    s = load_settings(data_dir=str(tmp_path))
    assert s.retrieval.path == str(tmp_path / "memory")
    assert s.retrieval.image_store == str(tmp_path / "images")
    assert s.evidence.runtime_cache == str(tmp_path / "evidence-runtime")
    assert s.embedding.runtime_cache == str(tmp_path / "embedding-runtime")


def test_a_bad_value_names_the_dotted_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("retrieval:\n  hnsw:\n    m: one\n")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert "retrieval.hnsw.m" in str(e.value) and str(cfg) in str(e.value)


def test_an_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("decison:\n  backend: random\n")
    with pytest.raises(ConfigError, match="decison"):
        load_settings(cfg)


def test_a_missing_or_malformed_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)


def test_a_typo_in_a_nested_section_is_refused_by_its_dotted_key(tmp_path: Path) -> None:
    cfg = tmp_path / "nested.yaml"
    cfg.write_text("retrieval:\n  hnsw:\n    ef_constuct: 64\n")
    with pytest.raises(ConfigError, match=r"retrieval\.hnsw\.ef_constuct"):
        load_settings(cfg)
