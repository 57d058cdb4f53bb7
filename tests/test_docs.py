"""Run every ```bash and ```python block of docs/USER_GUIDE.md, as a user would, so the guide cannot go stale."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, shared_path

GUIDE = REPO / "docs" / "USER_GUIDE.md"
BLOCKS = re.findall(r"```(bash|python)\n(.*?)```", GUIDE.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A folder that looks like the repository root: src/ and hubconf.py, with ../shared beside it."""
    root = tmp_path_factory.mktemp("guide")
    work = root / "work"
    work.mkdir()
    (work / "src").symlink_to(REPO / "src")
    (work / "hubconf.py").symlink_to(REPO / "hubconf.py")
    (root / "shared").symlink_to(shared_path())
    return work


def test_guide_has_blocks():
    assert sum(kind == "bash" for kind, _ in BLOCKS) >= 6 and any(kind == "python" for kind, _ in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_guide_block_runs(scratch, index):
    kind, code = BLOCKS[index]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = ["bash", "-euo", "pipefail", "-c", code] if kind == "bash" else [sys.executable, "-c", code]
    done = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"block {index} failed:\n{code}\n--- stderr ---\n{done.stderr[-3000:]}"
