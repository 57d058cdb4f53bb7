"""The engine's kernels as machine code for this CPU, loaded without starting Numba.

Numba compiles the kernels (``kernels.py``) well, but a process that calls them through Numba first
pays its start, importing Numba and loading its cached kernels: most of a small image's time, and a
tenth of a folder's (docs/results/speed_candidates.md). So Numba compiles them once per machine, as
C-callable functions, and llvmlite (Numba's own LLVM binding) writes them to one object file in a
cache folder, with nothing left in it that calls into Numba's or Python's runtime (checked). A later
process loads that file with llvmlite's MCJIT, without importing Numba, and calls the kernels
through ctypes, which releases the GIL, so the threads running bands run them at once.

The file's name is a hash of what its code depends on: the kernels' source, this module, the CPU
and Numba's and llvmlite's versions; its contents carry a checksum, and a file that fails it, or
that belongs to another user, is compiled again. Where no cache folder is writable, every process
compiles anew (``notice``, which the command line prints, says so, and says when it compiles).

All this leans on parts of Numba and llvmlite that are not public promises (their LLVM passes, the
IR of their C entry points). Where a release has moved them and the object file cannot be made or
loaded, the kernels run as Numba's own compiled entry points instead: the same code and results,
with Numba's start in every process. One warning says so (``fallback``); nothing fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Each entry point's arguments: "p" a float32 array's data pointer, "i" an int64, "f" a float32, as
# ``kernels.py`` declares them (checked when they are compiled).
SIGNATURES = {
    "input_transform": "piiippiiif",
    "output_transform": "pppiiipippiiiif",
    "upsample_input_transform": "piiippiii",
    "upsample_output_transform": "pppiiippiiiif",
    "image_upsample": "piipp",
}
MAGIC = b"lapsrn-kernels-1\n"  # then the sha256 of the object code, then the object code
_CTYPES = {"p": ctypes.c_void_p, "i": ctypes.c_int64, "f": ctypes.c_float}

notice: Callable[[str, bool], None] | None = None  # (message, warning): a compile, or a cache not kept (the CLI prints)
_lock = threading.Lock()
_functions: dict[str, ctypes._CFuncPtr] = {}
_engine = None  # llvmlite's execution engine: owns the loaded code, so it lives as long as the process
_entries: dict = {}  # Numba's compiled entry points when they are what runs (they own their code)
fallback: str | None = None  # why the kernels run as Numba's own functions, when they do


def _say(message: str, warning: bool) -> None:
    """Tell the user: through ``notice`` when the command line set it, else a warning (a notice is dropped)."""
    if notice:
        notice(message, warning)
    elif warning:
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def cache_folder() -> Path | None:
    """Where the compiled kernels are kept: $LAPSRN_CACHE_DIR, else $XDG_CACHE_HOME/lapsrn or ~/.cache/lapsrn;
    None for a user without a home folder (a container's bare uid), who then compiles them in every process."""
    if os.environ.get("LAPSRN_CACHE_DIR"):
        return Path(os.environ["LAPSRN_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "lapsrn"
    try:
        return Path.home() / ".cache" / "lapsrn"
    except (RuntimeError, KeyError):  # no HOME and no entry in the password database
        return None


def target_cpu() -> tuple[str, str]:
    """The CPU the kernels are compiled for and its LLVM features: this one, with every feature it has, unless
    Numba's own NUMBA_CPU_NAME / NUMBA_CPU_FEATURES name another, read as Numba reads them (no features beyond
    the name's for "generic"). Both Numba's code and ours then target it: kernels for an older CPU than the
    one building them (a container image's), or AVX2 code measured on an AVX-512 machine."""
    import llvmlite.binding as llvm

    name = os.environ.get("NUMBA_CPU_NAME") or llvm.get_host_cpu_name()
    features = os.environ.get("NUMBA_CPU_FEATURES")
    if features is None:
        features = "" if name.lower() == "generic" else llvm.get_host_cpu_features().flatten()
    return name, features


def _target_machine():
    """The LLVM target for ``target_cpu``, set up as Numba sets up its own JIT."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    triple = llvm.get_process_triple()
    cpu, features = target_cpu()
    return llvm.Target.from_triple(triple).create_target_machine(
        cpu=cpu,
        features=features,
        opt=3,
        reloc="static" if triple.startswith(("x86", "i386", "i686")) else "default",  # what MCJIT needs there
        codemodel="jitdefault",
        jit=True,
    )


def _cache_file(machine) -> Path | None:
    """The object file for these kernels on this CPU, made by this llvmlite (None: no cache folder)."""
    import llvmlite

    folder = cache_folder()
    if folder is None:
        return None
    here = Path(__file__).parent
    key = hashlib.sha256()
    for source in (here / "kernels.py", here / "native.py", _numba_version_file()):
        key.update(source.read_bytes() if source else b"")
    cpu = " ".join(target_cpu())
    key.update(f"{machine.triple} {machine.target_data} {cpu} llvmlite {llvmlite.__version__}".encode())
    return folder / f"kernels-{key.hexdigest()[:32]}.o"


def _numba_version_file() -> Path | None:
    """Numba's version file, found without importing Numba (a second of start-up): its version is in the key."""
    spec = importlib.util.find_spec("numba")
    version = Path(spec.origin).with_name("_version.py") if spec and spec.origin else None
    return version if version and version.is_file() else None


def build(machine) -> bytes:
    """Compile the kernels' entry points with Numba and return them as one self-contained object file.

    Numba wraps every call in error handling that reaches into its runtime and Python's. The kernels
    cannot raise (no bounds checks, NumPy's error model, no allocation), so once everything but the
    entry points is internal, interprocedural constant propagation proves each call returns success
    and the handling is dropped as dead code; the kernels' own code is left as Numba optimised it.
    Then no symbol outside the file is left to resolve (checked), which is what lets it load alone.
    """
    import llvmlite.binding as llvm

    from .kernels import entry_points

    module = None
    for name, entry in entry_points().items():
        kinds = "".join(_kind(t) for t in entry.ctypes.argtypes)
        if kinds != SIGNATURES[name]:  # ctypes would pass the arguments wrongly
            raise RuntimeError(f"{name}'s entry point takes {kinds!r}, SIGNATURES says {SIGNATURES[name]!r}")
        part = llvm.parse_assembly(entry.inspect_llvm())
        for fn in part.functions:
            if fn.name == entry.native_name:
                fn.name = f"lapsrn_{name}"
            elif not fn.is_declaration:
                fn.linkage = llvm.Linkage.internal
        for var in part.global_variables:
            if not var.is_declaration:
                var.linkage = llvm.Linkage.internal
        if module is None:
            module = part
        else:
            module.link_in(part)
    passes = llvm.create_new_module_pass_manager()
    passes.add_ipsccp_pass()
    passes.add_simplify_cfg_pass()
    passes.add_global_dead_code_eliminate_pass()
    passes.add_strip_dead_prototype_pass()
    passes.run(module, llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(speed_level=0)))
    outside = [fn.name for fn in module.functions if fn.is_declaration and not fn.name.startswith("llvm.")]
    outside += [var.name for var in module.global_variables if var.is_declaration]
    if outside:
        raise RuntimeError(f"the compiled kernels still call {', '.join(outside)}: they would not load alone")
    module.verify()
    return machine.emit_object(module)


def _kind(argtype: type) -> str:
    """A compiled entry point's ctypes argument type as a ``SIGNATURES`` letter."""
    if argtype is ctypes.c_float:
        return "f"
    if issubclass(argtype, ctypes._Pointer):
        return "p"
    return "i" if ctypes.sizeof(argtype) == 8 and argtype(-1).value == -1 else "?"


def _read(path: Path | None) -> bytes | None:
    """The object code in ``path``, or None if it is missing, fails its checksum, or is not this user's
    (machine code from a file others could have written is not run)."""
    try:
        if path is None or (hasattr(os, "getuid") and path.stat().st_uid != os.getuid()):
            return None
        data = path.read_bytes()
    except OSError:
        return None
    head, digest, code = data[: len(MAGIC)], data[len(MAGIC) : len(MAGIC) + 32], data[len(MAGIC) + 32 :]
    return code if head == MAGIC and hashlib.sha256(code).digest() == digest else None


def _write(path: Path | None, code: bytes) -> bool:
    """Keep ``code`` for the next process, atomically; False where there is no writable cache folder."""
    if path is None:
        return False
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp.write_bytes(MAGIC + hashlib.sha256(code).digest() + code)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):  # also where the folder itself is missing
            tmp.unlink()
        return False
    return True


def functions() -> dict[str, ctypes._CFuncPtr]:
    """The kernels' entry points, loaded at the first call: from the cache, else compiled and cached; where that
    machinery fails (a Numba or llvmlite release that moved it), Numba's own compiled entry points."""
    global fallback
    with _lock:
        if _functions:
            return _functions
        try:
            loaded = _load_object_file()
        except Exception as e:  # noqa: BLE001 -- any failure of the standalone build has the same way out
            fallback = f"{type(e).__name__}: {e}".splitlines()[0]
            loaded = _numba_functions()
            _say(
                f"the CPU kernels' standalone build failed with this Numba/llvmlite ({fallback}); running Numba's "
                "own compiled kernels instead: same results, a slower start",
                True,
            )
        kernels = sys.modules.get(f"{__package__}.kernels")  # imported only where they were compiled now
        if kernels is not None and not kernels.NOALIAS[0]:
            _say("this Numba's compile flags have moved: the CPU kernels run without noalias, slower", True)
        _functions.update(loaded)
        return _functions


def _prototype(spec: str) -> type:
    """The ctypes function type of an entry point with these ``SIGNATURES`` letters (calls release the GIL)."""
    return ctypes.CFUNCTYPE(None, *(_CTYPES[kind] for kind in spec))


def _load_object_file() -> dict[str, ctypes._CFuncPtr]:
    """The kernels from this machine's object file, made now if it is missing, loaded by llvmlite's MCJIT."""
    global _engine
    import llvmlite.binding as llvm

    machine = _target_machine()
    path = _cache_file(machine)
    code = _read(path)
    if code is None:
        _say("compiling the CPU kernels for this machine...", False)
        code = build(machine)
        if not _write(path, code):
            where = path.parent if path else "a cache folder (no home folder)"
            _say(
                f"cannot keep the compiled kernels in {where}: every run compiles them again; "
                "set LAPSRN_CACHE_DIR to a writable folder",
                True,
            )
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), machine)
    engine.add_object_file(llvm.ObjectFileRef.from_data(code))
    engine.finalize_object()
    loaded = {}
    for name, spec in SIGNATURES.items():
        address = engine.get_function_address(f"lapsrn_{name}")
        if not address:  # calling it would crash the process
            raise RuntimeError(f"the compiled kernels lack {name}: delete {path} and run again")
        loaded[name] = _prototype(spec)(address)
    _engine = engine
    return loaded


def _numba_functions() -> dict[str, ctypes._CFuncPtr]:
    """The kernels as Numba compiles them in this process (``kernels.entry_points``), called the same way."""
    from .kernels import entry_points

    _entries.update(entry_points())
    return {name: _prototype(spec)(_entries[name].address) for name, spec in SIGNATURES.items()}


def _pointer(a: np.ndarray, ndim: int) -> int:
    """The data pointer of an array the kernels may read or write as ``ndim``-dimensional float32 C order."""
    if a.dtype != np.float32 or a.ndim != ndim or not a.flags.c_contiguous:
        raise ValueError(f"the kernels need {ndim}-D C-contiguous float32 arrays, got {a.dtype} {a.shape}")
    return a.ctypes.data


_scratch = threading.local()


def _work(size: int) -> int:
    """The address of this thread's work array of at least ``size`` floats (a few kB, kept for the next call)."""
    if getattr(_scratch, "size", 0) < size:
        _scratch.array = np.empty(size + 16, np.float32)
        _scratch.size = size
        _scratch.address = _scratch.array.ctypes.data + (-_scratch.array.ctypes.data % 64)  # Numba aligns to 64 too
    return _scratch.address


# The kernels, bound to a layer's arrays: each returns the call for one band of tiles (v or m, first, n),
# which the threads running bands make at once; a band's v and m are fresh (positions, n, channels) views.


def input_transform(xp: np.ndarray, tw: int, slope: np.float32) -> Callable[[np.ndarray, int, int], None]:
    """v <- B^T d B of the LeakyReLU_slope of each 8x8 window of the zero-bordered map xp (``kernels``),
    tiles of 6x6 outputs, ``tw`` to a row."""
    fn, (xh, xw, c), x = functions()["input_transform"], xp.shape, _pointer(xp, 3)
    if 6 * tw + 2 > xw:
        raise ValueError(f"{tw} tiles of 6 to a row read past a map {xw} wide")

    def run(v: np.ndarray, first: int, n: int) -> None:
        fn(x, xh, xw, c, v.ctypes.data, _work(64 * c), first, n, tw, slope)

    run.arrays = xp  # alive as long as the call that reads it
    return run


def output_transform(
    bias: np.ndarray, out: np.ndarray, skip: np.ndarray | None, h: int, w: int, slope: np.float32
) -> Callable[[np.ndarray, int, int], None]:
    """out <- LeakyReLU_slope(A^T m A + bias (+ skip)) over the h x w inside of the zero-bordered ``out``."""
    fn, (oh, ow, c), o, b = functions()["output_transform"], out.shape, _pointer(out, 3), _pointer(bias, 1)
    if bias.shape != (c,) or (skip is not None and skip.shape != out.shape):
        raise ValueError(f"bias {bias.shape}, skip {None if skip is None else skip.shape}, output {out.shape}")
    k = _pointer(skip, 3) if skip is not None else o

    def run(m: np.ndarray, first: int, n: int) -> None:
        work = _work(54 * c)  # s: (6, 8, C) floats, then o: (6, C) at byte 4 * 48C
        fn(m.ctypes.data, b, o, oh, ow, c, k, skip is not None, work, work + 4 * 48 * c, first, n, h, w, slope)

    run.arrays = (bias, out, skip)
    return run


def upsample_input_transform(xp: np.ndarray, tw: int) -> Callable[[np.ndarray, int, int], None]:
    """v <- B^T d B of each 5x5 window of the zero-bordered map xp, for the feature upsampler's F(4x4, 2x2),
    ``tw`` tiles of 4x4 to a row."""
    fn, (xh, xw, c), x = functions()["upsample_input_transform"], xp.shape, _pointer(xp, 3)
    if 4 * tw + 1 > xw:
        raise ValueError(f"{tw} tiles of 4 to a row read past a map {xw} wide")

    def run(v: np.ndarray, first: int, n: int) -> None:
        fn(x, xh, xw, c, v.ctypes.data, _work(25 * c), first, n, tw)

    run.arrays = xp
    return run


def upsample_output_transform(
    bias: np.ndarray, out: np.ndarray, h: int, w: int, slope: np.float32
) -> Callable[[np.ndarray, int, int], None]:
    """out (2h x 2w inside) <- LeakyReLU_slope(each output phase of A^T m A + bias), phases to their pixels."""
    fn, (oh, ow, c) = functions()["upsample_output_transform"], out.shape
    o, b = _pointer(out, 3), _pointer(bias, 1)
    if bias.shape != (c,):
        raise ValueError(f"bias {bias.shape} for an output of shape {out.shape}")

    def run(m: np.ndarray, first: int, n: int) -> None:
        work = _work(96 * c)  # s: (4, 5, 4C) floats, then o: (4, 4C) at byte 4 * 80C
        fn(m.ctypes.data, b, o, oh, ow, c, work, work + 4 * 80 * c, first, n, h, w, slope)

    run.arrays = (bias, out)
    return run


def image_upsample(x: np.ndarray, k: np.ndarray, out: np.ndarray) -> None:
    """out (2h x 2w) <- ConvTranspose2d(x, k, stride 2, padding 1) of one (h x w) plane, 4x4 kernel k."""
    if k.shape != (4, 4) or out.shape != (2 * x.shape[0], 2 * x.shape[1]):
        raise ValueError(f"image_upsample: kernel {k.shape}, plane {x.shape}, output {out.shape}")
    functions()["image_upsample"](_pointer(x, 2), x.shape[0], x.shape[1], _pointer(k, 2), _pointer(out, 2))
