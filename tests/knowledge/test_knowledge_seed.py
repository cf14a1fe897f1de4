"""The embedded default writes knowledge under data_dir, seeded from the shipped base, never into it."""

from __future__ import annotations

from pathlib import Path

from services.config import load_settings
from services.knowledge.core import seed_folder
from services.knowledge.entries import default_root, knowledge_files


def test_default_knowledge_folder_is_under_data_dir(tmp_path: Path) -> None:
    s = load_settings(data_dir=str(tmp_path))
    assert Path(s.knowledge.dir) == tmp_path / "knowledge"


def test_a_missing_folder_is_seeded_with_the_shipped_base_once(tmp_path: Path) -> None:
    root = seed_folder(tmp_path / "kb")
    shipped = {p.relative_to(default_root()) for p in knowledge_files(default_root())}
    assert {p.relative_to(root) for p in knowledge_files(root)} == shipped
    (root / "Synthetic" / "screw.yaml").unlink()
    seed_folder(root)  # not empty: left as the user has it
    assert not (root / "Synthetic" / "screw.yaml").exists()
