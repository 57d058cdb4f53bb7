"""The engine degrades instead of failing when Numba's or llvmlite's internals move (``engine.native``, ``kernels``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "src/lapsrn/assets/sample.png"

BROKEN_LLVMLITE = """
import llvmlite.binding as llvm

def moved(*args, **kwargs):
    raise AttributeError("module 'llvmlite.binding' has no attribute 'create_new_module_pass_manager'")

llvm.create_new_module_pass_manager = moved  # as if a release renamed it
from lapsrn.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def _upscale(tmp_path: Path, out: Path, broken: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAPSRN_CACHE_DIR": str(tmp_path / ("cache-broken" if broken else "cache"))}
    args = ["upscale", "-i", str(SAMPLE), "-o", str(out), "-s", "4"]
    code = ["-c", "import sys\n" + BROKEN_LLVMLITE] if broken else ["-m", "lapsrn"]
    return subprocess.run([sys.executable, *code, *args], capture_output=True, text=True, env=env, timeout=600)


def test_a_moved_llvmlite_falls_back_to_numbas_functions_with_the_same_output(tmp_path):
    """The standalone object file cannot be built: one warning, Numba's own compiled kernels, the same bytes."""
    normal = _upscale(tmp_path, tmp_path / "normal.png", broken=False)
    assert normal.returncode == 0, normal.stderr
    fallen = _upscale(tmp_path, tmp_path / "fallen.png", broken=True)
    assert fallen.returncode == 0, fallen.stderr
    assert "Traceback" not in fallen.stderr
    warning = [line for line in fallen.stderr.splitlines() if "standalone build failed" in line]
    assert warning == [
        "lapsrn: the CPU kernels' standalone build failed with this Numba/llvmlite (AttributeError: module "
        "'llvmlite.binding' has no attribute 'create_new_module_pass_manager'); running Numba's own compiled "
        "kernels instead: same results, a slower start"
    ]
    # the same kernels' code, made to machine code by Numba's JIT instead of our object file: instruction selection
    # (fused multiply-adds) may round a few float32 results apart, so a few 8-bit samples, by one level at most
    normal = np.asarray(Image.open(tmp_path / "normal.png")).astype(int)
    fallen = np.asarray(Image.open(tmp_path / "fallen.png")).astype(int)
    diff = np.abs(normal - fallen)
    assert normal.shape == fallen.shape == (480, 640, 3) and diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert not list((tmp_path / "cache-broken").glob("kernels-*.o"))  # nothing half-made was kept


def test_moved_compile_flags_compile_without_noalias(monkeypatch):
    """Numba's compile flags without ``noalias`` (a release that moved it): the kernel compiles and runs as
    plain Numba, and ``NOALIAS`` records it for the warning."""
    import numpy as np
    from numba.core.compiler import Flags

    from lapsrn.engine import kernels

    def double(x, out):
        for i in range(x.shape[0]):
            out[i] = 2 * x[i]

    monkeypatch.setattr(kernels, "NOALIAS", [True])
    monkeypatch.setattr(Flags, "options", {})
    fn = kernels.kernel(double)
    recorded = list(kernels.NOALIAS)
    monkeypatch.undo()  # Numba needs its real flags to compile
    assert recorded == [False]
    out = np.zeros(3, np.float32)
    fn(np.arange(3, dtype=np.float32), out)
    assert out.tolist() == [0.0, 2.0, 4.0]


def test_numbas_version_is_in_the_kernels_cache_key(monkeypatch, tmp_path):
    """Another Numba compiles other code: its version file is part of the object file's name."""
    from lapsrn.engine import native

    monkeypatch.setenv("LAPSRN_CACHE_DIR", str(tmp_path))
    machine = native._target_machine()
    before = native._cache_file(machine)
    version = tmp_path / "_version.py"
    version.write_text("version = '9.99.0'\n")
    monkeypatch.setattr(native, "_numba_version_file", lambda: version)
    assert native._cache_file(machine) != before
