"""Where the project's files live, whichever directory the command runs from."""

from __future__ import annotations

from pathlib import Path

# infra/order_engine_cli/project.py -> the repository root (the package is installed
# in editable mode, so this is the checkout the user cloned).
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
DATA_DIR = ROOT / ".data"
POSTGRES_DIR = DATA_DIR / "postgres"
