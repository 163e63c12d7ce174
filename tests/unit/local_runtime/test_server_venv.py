"""A server's venv (server_venv.py): built once, and never through a link to another's."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_runtime import server_venv


def test_a_venv_linked_from_another_checkout_is_left_alone_and_ours_is_built_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another checkout's venv, built from its constraints, that this one links to.
    theirs = tmp_path / "main" / "ministack-venv"
    (theirs / "bin").mkdir(parents=True)
    (theirs / "bin" / "python").write_text("their python")
    (theirs / ".local-runtime-stamp").write_text("their constraints")
    ours = tmp_path / "worktree" / "ministack-venv"
    ours.parent.mkdir()
    ours.symlink_to(theirs)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("ministack==1.5.33\nuvicorn==0.55.0\n")

    def build(argv: list[str]) -> None:  # stands in for venv and pip
        if argv[1:3] == ["-m", "venv"]:
            venv = Path(argv[3])
            (venv / "bin").mkdir(parents=True)
            (venv / "bin" / "python").write_text("our python")

    monkeypatch.setattr(server_venv, "_run", build)

    python = server_venv.ensure_venv(
        ours, base_python=lambda: "python3", requirements=("ministack",), constraints=constraints
    )

    assert python == ours.absolute() / "bin" / "python"
    assert not ours.is_symlink()
    assert python.read_text() == "our python"
    assert (theirs / "bin" / "python").read_text() == "their python"
    assert (theirs / ".local-runtime-stamp").read_text() == "their constraints"
