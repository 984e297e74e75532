"""The python blocks of docs/keops.md run, in order, in one namespace."""

from __future__ import annotations

from pathlib import Path

from tests.test_notebooks import _python_blocks

DOC = Path(__file__).resolve().parents[2] / "docs" / "keops.md"


def test_keops_guide_blocks_run():
    blocks = _python_blocks(DOC.read_text())
    assert len(blocks) >= 4
    namespace: dict = {}
    for k, block in enumerate(blocks):
        exec(compile(block, f"docs/keops.md block {k}", "exec"), namespace)  # our own docs
