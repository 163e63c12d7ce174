"""docs/deploy.md shows what docs/deploy_figures.py works out from template.yaml and the
engine's code: change either, and this fails until the doc is regenerated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_deploy_doc_shows_the_figures_the_template_and_code_give() -> None:
    printed = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "deploy_figures.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    doc = (ROOT / "docs" / "deploy.md").read_text()
    sections = printed.split("## ")[1:]
    assert [s.partition("\n")[0] for s in sections] == [
        "Sizing",
        "Cost per million orders",
        "At rest",
    ]
    for section in sections:
        table = section.partition("\n")[2].strip()
        assert table in doc, f"docs/deploy.md is missing, or shows other figures than:\n{table}"
