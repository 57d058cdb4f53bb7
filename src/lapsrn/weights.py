"""Weights: our safetensors format (with metadata), the authors' MatConvNet .mat files, the bundled default.

A weights file is data, never code: safetensors for our own files and
``scipy.io.loadmat`` for the authors' (neither can execute anything on
load). Every failure to read one becomes a ``WeightsError`` with one line
that says what is wrong.

Reading gives NumPy arrays under the reference model's state-dict names
(``read``), which the CPU engine runs without torch; ``load`` builds the
PyTorch reference module from them, for training, export and GPUs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import layout as L

PACKAGE_WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_MODEL = "mslapsrn_d5r2"  # the bundled model, trained from scratch by this project
MAX_LEVELS = 6  # x64: the most levels a model or a request may have; beyond, a "scale" is a typo
MAX_WEIGHT = 1e4  # trained or released weights stay far below; larger ones overflow float32 features


class WeightsError(ValueError):
    """A weights file that cannot be used: missing, corrupt, of the wrong kind or shape."""


@dataclass
class ModelSpec:
    """What a weights file describes: enough to rebuild the network."""

    arch: str  # "LapSRN", "MSLapSRN" or the ablation "OneStep"
    depth: int
    levels: int
    recursions: int = 1
    skip: str = "SS"
    extra: dict[str, str] = field(default_factory=dict)  # training recipe, provenance
    sharing: str = "separate"  # LapSRN ablation: "shared" = one level's weights at every level
    reconstruction: str = "residual"  # LapSRN ablation: "direct" = no image branch

    @property
    def released(self) -> bool:
        """One of the papers' released architectures (which the CPU engine runs), not an ablation variant."""
        return self.arch in ("LapSRN", "MSLapSRN") and (self.sharing, self.reconstruction) == ("separate", "residual")

    @property
    def max_levels(self) -> int | None:
        """Levels the network can run; None when its levels share weights (any number)."""
        shared = self.arch == "MSLapSRN" or self.sharing == "shared"
        return None if shared else self.levels

    def build(self):
        """The untrained PyTorch reference network this spec describes (needs torch)."""
        from .models import LapSRN, MSLapSRN, OneStep

        if self.arch == "LapSRN":
            return LapSRN(self.levels, self.depth, sharing=self.sharing, reconstruction=self.reconstruction)  # type: ignore[arg-type]
        if self.arch == "MSLapSRN":
            return MSLapSRN(self.depth, self.recursions, self.skip, self.levels)  # type: ignore[arg-type]
        if self.arch == "OneStep":
            return OneStep(self.levels, self.depth)
        raise WeightsError(f"unknown architecture {self.arch!r}")

    def metadata(self) -> dict[str, str]:
        """safetensors metadata: str -> str only."""
        meta = {
            "format": "lapsrn",
            "arch": self.arch,
            "depth": str(self.depth),
            "levels": str(self.levels),
            "recursions": str(self.recursions),
            "skip": self.skip,
        }
        if not self.released and self.arch == "LapSRN":  # written only for ablations: released files keep their header
            meta.update(sharing=self.sharing, reconstruction=self.reconstruction)
        meta.update(self.extra)
        return meta

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor's name and shape, as in the reference model's state dict (checked against it in tests)."""
        out: dict[str, tuple[int, ...]] = {}

        def add_conv(name: str, cin: int, cout: int) -> None:
            out[f"{name}.weight"], out[f"{name}.bias"] = (cout, cin, 3, 3), (cout,)

        def add_branch(upsampler: str, prefix: str) -> None:
            out[f"{upsampler}.deconv.weight"], out[f"{upsampler}.deconv.bias"] = (64, 64, 3, 3), (64,)
            add_conv(L.residual(prefix), 64, 1)
            out[f"{L.image_upsampler(prefix)}.deconv.weight"] = (1, 1, 4, 4)

        add_conv(L.INPUT_CONV, 1, 64)
        if self.arch == "LapSRN":
            for i in range(1 if self.sharing == "shared" else self.levels):
                for d in range(self.depth):
                    add_conv(L.lapsrn_conv(i, d), 64, 64)
                add_branch(L.lapsrn_upsampler(i, self.depth), L.lapsrn_level(i))
                if self.reconstruction == "direct":
                    del out[f"{L.image_upsampler(L.lapsrn_level(i))}.deconv.weight"]
        elif self.arch == "OneStep":
            convs = self.depth * self.levels
            for d in range(convs):
                add_conv(L.onestep_conv(d), 64, 64)
            for u in range(self.levels):
                name = f"{L.onestep_upsampler(convs, u)}.deconv"
                out[f"{name}.weight"], out[f"{name}.bias"] = (64, 64, 3, 3), (64,)
            add_conv(L.residual(), 64, 1)
            for u in range(self.levels):
                out[f"{L.onestep_image_upsampler(u)}.deconv.weight"] = (1, 1, 4, 4)
        else:
            for d in range(self.depth):
                add_conv(L.mslapsrn_conv(d), 64, 64)
            add_branch(L.MSLAPSRN_UPSAMPLER, "")
        return out


def spec_of(model, **extra: str) -> ModelSpec:
    """The ModelSpec of a reference network instance."""
    from .models import LapSRN, MSLapSRN, OneStep

    if isinstance(model, MSLapSRN):
        return ModelSpec("MSLapSRN", model.depth, model.levels, model.recursions, model.skip, dict(extra))
    if isinstance(model, LapSRN):
        variant = {"sharing": model.sharing, "reconstruction": model.reconstruction}
        return ModelSpec("LapSRN", model.depth, model.levels, extra=dict(extra), **variant)
    if isinstance(model, OneStep):
        return ModelSpec("OneStep", model.depth, model.levels, extra=dict(extra))
    raise TypeError(f"not a LapSRN model: {type(model).__name__}")


def save_state(spec: ModelSpec, state: dict[str, np.ndarray], path: str | Path) -> None:
    """Write NumPy weights + metadata as safetensors, atomically (temp file, then rename)."""
    from safetensors.numpy import save_file

    from .io import atomic_path

    arrays = {k: np.ascontiguousarray(v, np.float32) for k, v in state.items()}
    with atomic_path(Path(path)) as tmp:
        save_file(arrays, str(tmp), metadata=spec.metadata())


def save(model, path: str | Path, **extra: str) -> None:
    """Write a reference network's weights + metadata as safetensors, atomically."""
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    save_state(spec_of(model, **extra), state, path)


def _load_safetensors(path: Path) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """Spec and tensors of one of our safetensors files."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != "lapsrn":
        raise WeightsError(f"{path}: safetensors file without lapsrn metadata")
    try:
        core = {"arch", "depth", "levels", "recursions", "skip", "format", "sharing", "reconstruction"}
        spec = ModelSpec(
            arch=meta["arch"],
            depth=int(meta["depth"]),
            levels=int(meta["levels"]),
            recursions=int(meta.get("recursions", "1")),
            skip=meta.get("skip", "SS"),
            extra={k: v for k, v in meta.items() if k not in core},
            sharing=meta.get("sharing", "separate"),
            reconstruction=meta.get("reconstruction", "residual"),
        )
    except (KeyError, ValueError) as e:
        raise WeightsError(f"{path}: bad lapsrn metadata ({e})") from None
    # bound the header before building anything: a forged depth must not allocate a huge network
    if not (
        1 <= spec.depth <= 64
        and 1 <= spec.levels <= MAX_LEVELS
        and 1 <= spec.recursions <= 64
        and spec.skip in ("NS", "DS", "SS")
        and spec.arch in ("LapSRN", "MSLapSRN", "OneStep")
        and spec.sharing in ("separate", "shared")
        and spec.reconstruction in ("residual", "direct")
    ):
        raise WeightsError(
            f"{path}: implausible lapsrn metadata ({spec.arch} depth {spec.depth}, levels {spec.levels}, "
            f"R {spec.recursions} {spec.skip}, {spec.sharing} {spec.reconstruction})"
        )
    return spec, state


# ---------------------------------------------------------------- MatConvNet import


def _mat_params(path: Path) -> dict:
    """name -> float32 array of every parameter in a MatConvNet DagNN file."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
        if "net" not in mat:
            raise WeightsError(f"{path}: .mat file without a MatConvNet 'net' (is it an _opts.mat?)")
        params = np.atleast_1d(mat["net"].params)
        return {p.name: np.asarray(p.value, dtype=np.float32) for p in params}
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 -- loadmat raises many types on corrupt input
        raise WeightsError(f"{path}: not a MatConvNet LapSRN weights file ({type(e).__name__})") from None


def _mat_opts(path: Path) -> tuple[int, int, str]:
    """(depth, recursions, skip) from the *_opts.mat beside an MS-LapSRN file."""
    import scipy.io

    opts_path = path.with_name(path.stem + "_opts.mat")
    if not opts_path.is_file():
        raise WeightsError(f"{path}: MS-LapSRN weights need {opts_path.name} beside them (D, R, skip)")
    try:
        o = scipy.io.loadmat(str(opts_path), squeeze_me=True, struct_as_record=False)["opts"]
        return int(o.depth), int(o.recursive), str(o.LRL)
    except Exception as e:  # noqa: BLE001 -- as above
        raise WeightsError(f"{opts_path}: unreadable opts file ({type(e).__name__})") from None


def _conv(value: np.ndarray, cin: int, cout: int) -> np.ndarray:
    """MatConvNet conv filters (kh, kw, in, out), squeezed by loadmat -> reference (out, in, kh, kw)."""
    t = np.asarray(value, np.float32).reshape(value.shape[0], value.shape[1], cin, cout)
    return np.ascontiguousarray(t.transpose(3, 2, 0, 1))


def _deconv(value: np.ndarray, cin: int, cout: int) -> np.ndarray:
    """MatConvNet ConvTranspose filters (kh, kw, out, in) -> reference (in, out, kh, kw)."""
    t = np.asarray(value, np.float32).reshape(value.shape[0], value.shape[1], cout, cin)
    return np.ascontiguousarray(t.transpose(3, 2, 0, 1))


def _bias(value) -> np.ndarray:
    """Biases as 1-D float32 (loadmat squeezes a single bias to a scalar)."""
    return np.asarray(value, np.float32).reshape(-1)


def _branch_state(p: dict, src: str, convs: list[str], upsampler: str, prefix: str) -> dict:
    """State of one feature branch from the .mat parameters named ``src``...: the D convs (named ``convs``),
    the feature upsampler, the residual conv, img_up."""
    s = {}
    for d, conv in enumerate(convs):
        s[f"{conv}.weight"] = _conv(p[f"{src}conv{d + 1}_f"], 64, 64)
        s[f"{conv}.bias"] = _bias(p[f"{src}conv{d + 1}_b"])
    s[f"{upsampler}.deconv.weight"] = _deconv(p[f"{src}upconv_f"], 64, 64)
    s[f"{upsampler}.deconv.bias"] = _bias(p[f"{src}upconv_b"])
    s[f"{L.residual(prefix)}.weight"] = _conv(p[f"{src}residual_conv_f"], 64, 1)
    s[f"{L.residual(prefix)}.bias"] = _bias(p[f"{src}residual_conv_b"])
    s[f"{L.image_upsampler(prefix)}.deconv.weight"] = _deconv(p[f"{src}img_up_f"], 1, 1)
    return s


def load_mat(path: str | Path) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """Spec and state dict from the authors' LapSRN_x*.mat or MSLapSRN_D*R*.mat (+ _opts.mat)."""
    path = Path(path)
    p = _mat_params(path)
    if "input_conv_f" not in p:
        raise WeightsError(f"{path}: MatConvNet file without LapSRN parameters")
    conv = L.INPUT_CONV
    state = {f"{conv}.weight": _conv(p["input_conv_f"], 1, 64), f"{conv}.bias": _bias(p["input_conv_b"])}
    if "upconv_f" in p:  # MS-LapSRN: one shared set of weights
        depth, recursions, skip = _mat_opts(path)
        spec = ModelSpec("MSLapSRN", depth, 3, recursions, skip, {"source": f"official {path.name}"})
        convs = [L.mslapsrn_conv(d) for d in range(depth)]
        state.update(_branch_state(p, "", convs, L.MSLAPSRN_UPSAMPLER, ""))
    else:  # LapSRN: the authors number levels from the output, level{L} is the x2 level
        levels = sum(1 for k in p if k.endswith("_img_up_f"))
        depth = sum(1 for k in p if k.startswith("level1_conv") and k.endswith("_f"))
        spec = ModelSpec("LapSRN", depth, levels, extra={"source": f"official {path.name}"})
        for i in range(levels):
            convs = [L.lapsrn_conv(i, d) for d in range(depth)]
            up = L.lapsrn_upsampler(i, depth)
            state.update(_branch_state(p, f"level{levels - i}_", convs, up, L.lapsrn_level(i)))
    return spec, state


# ---------------------------------------------------------------- one entry point


def bundled_card(name: str) -> dict:
    """The JSON card beside a bundled model: file, sha256, recipe, metrics, licence."""
    card = PACKAGE_WEIGHTS / f"{name}.json"
    if not card.is_file():
        available = ", ".join(sorted(p.stem for p in PACKAGE_WEIGHTS.glob("*.json"))) or "none"
        raise WeightsError(f"no bundled model {name!r} (bundled: {available})")
    return json.loads(card.read_text())


def sha256(path: Path) -> str:
    """Hex digest of a file, to check bundled weights were not corrupted or swapped."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_names() -> list[str]:
    """Names of the models shipped inside the package (one JSON card each)."""
    return sorted(p.stem for p in PACKAGE_WEIGHTS.glob("*.json"))


def resolve_model_name(name: str | Path | None) -> str | Path:
    """None or 'default' -> the bundled default; a bundled name in any case -> that name; else a file path.

    One rule for ``lapsrn.load``, ``-m`` and ``report -m``. An existing file wins
    over a bundled name, so a user's own file called like a bundled model is never shadowed.
    """
    if name is None or str(name).lower() == "default":
        return DEFAULT_MODEL
    if Path(name).exists() or Path(name).suffix:
        return Path(name)
    return next((b for b in bundled_names() if str(name).lower() == b.lower()), Path(name))


def resolve(model: str | Path | None) -> Path:
    """Path of a model given by bundled name (any case, or 'default'), file path, or None (the bundled default)."""
    name = resolve_model_name(model)
    if isinstance(name, Path):
        if not name.exists():
            if not name.suffix and not name.parent.parts:
                raise WeightsError(
                    f"no bundled model {str(name)!r} and no such file (bundled: default, {', '.join(bundled_names())})"
                )
            raise WeightsError(f"{name}: no such weights file")
        if not name.is_file():
            raise WeightsError(f"{name}: not a file")
        return name
    card = bundled_card(name)
    path = PACKAGE_WEIGHTS / card["file"]
    if not path.is_file() or sha256(path) != card["sha256"]:
        raise WeightsError(f"bundled model {name!r} is missing or corrupt (sha256 mismatch): reinstall lapsrn")
    return path


def _check(path: Path, spec: ModelSpec, state: dict[str, np.ndarray]) -> None:
    """Refuse tensors that do not fit the spec, or whose values no trained network has."""
    want = spec.shapes()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise WeightsError(f"{path}: tensors do not fit a {spec.arch} D{spec.depth}: {what}")
    for name, shape in want.items():
        if tuple(state[name].shape) != shape:
            raise WeightsError(
                f"{path}: tensors do not fit a {spec.arch} D{spec.depth}: "
                f"{name} has shape {tuple(state[name].shape)}, expected {shape}"
            )
    for name, t in state.items():
        if not np.isfinite(t).all():
            raise WeightsError(f"{path}: weights contain NaN or infinity ({name})")
        if t.size and np.abs(t).max() > MAX_WEIGHT:
            raise WeightsError(
                f"{path}: implausible weights ({name} reaches {np.abs(t).max():.3g}; trained ones stay "
                f"below {MAX_WEIGHT:g})"
            )


def read(model: str | Path | None = None) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """Spec and float32 NumPy weights from a bundled name, a .safetensors file or an official .mat; no torch."""
    path = resolve(model)
    spec, state = load_mat(path) if path.suffix.lower() == ".mat" else _load_safetensors(path)
    state = {k: np.asarray(v, np.float32) for k, v in state.items()}
    _check(path, spec, state)
    return spec, state


def load(model: str | Path | None = None):
    """The PyTorch reference network, in eval mode, with weights from a name or file (``read``); needs torch."""
    import torch

    spec, state = read(model)
    net = spec.build()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return net.eval(), spec


def convert(src: str | Path, dst: str | Path) -> ModelSpec:
    """Official .mat -> our safetensors, metadata included; no torch."""
    spec, state = read(src)
    save_state(spec, state, dst)
    return spec
