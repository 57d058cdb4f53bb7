"""Weights: our safetensors format (with metadata), the authors' MatConvNet .mat files, the bundled default.

A weights file is data, never code: safetensors for our own files and
``scipy.io.loadmat`` for the authors' (neither can execute anything on
load). Every failure to read one becomes a ``WeightsError`` with one line
that says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .models import LapSRN, MSLapSRN

PACKAGE_WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_MODEL = "mslapsrn_d5r2"  # the bundled model, trained from scratch by this project


class WeightsError(ValueError):
    """A weights file that cannot be used: missing, corrupt, of the wrong kind or shape."""


@dataclass
class ModelSpec:
    """What a weights file describes: enough to rebuild the network."""

    arch: str  # "LapSRN" or "MSLapSRN"
    depth: int
    levels: int
    recursions: int = 1
    skip: str = "SS"
    extra: dict[str, str] = field(default_factory=dict)  # training recipe, provenance

    def build(self) -> nn.Module:
        """The untrained network this spec describes."""
        if self.arch == "LapSRN":
            return LapSRN(levels=self.levels, depth=self.depth)
        if self.arch == "MSLapSRN":
            return MSLapSRN(self.depth, self.recursions, self.skip, self.levels)  # type: ignore[arg-type]
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
        meta.update(self.extra)
        return meta


def spec_of(model: nn.Module, **extra: str) -> ModelSpec:
    """The ModelSpec of a network instance."""
    if isinstance(model, MSLapSRN):
        return ModelSpec("MSLapSRN", model.depth, model.levels, model.recursions, model.skip, dict(extra))
    if isinstance(model, LapSRN):
        return ModelSpec("LapSRN", model.depth, model.levels, extra=dict(extra))
    raise TypeError(f"not a LapSRN model: {type(model).__name__}")


def save(model: nn.Module, path: str | Path, **extra: str) -> None:
    """Write weights + metadata as safetensors, atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    from .io import atomic_path

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(Path(path)) as tmp:
        save_file(state, str(tmp), metadata=spec_of(model, **extra).metadata())


def _load_safetensors(path: Path) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """Spec and tensors of one of our safetensors files."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != "lapsrn":
        raise WeightsError(f"{path}: safetensors file without lapsrn metadata")
    try:
        core = {"arch", "depth", "levels", "recursions", "skip", "format"}
        spec = ModelSpec(
            arch=meta["arch"],
            depth=int(meta["depth"]),
            levels=int(meta["levels"]),
            recursions=int(meta.get("recursions", "1")),
            skip=meta.get("skip", "SS"),
            extra={k: v for k, v in meta.items() if k not in core},
        )
    except (KeyError, ValueError) as e:
        raise WeightsError(f"{path}: bad lapsrn metadata ({e})") from None
    # bound the header before building anything: a forged depth must not allocate a huge network
    if not (1 <= spec.depth <= 64 and 1 <= spec.levels <= 6 and 1 <= spec.recursions <= 64 and spec.skip in ("NS", "DS", "SS")):
        raise WeightsError(f"{path}: implausible lapsrn metadata (depth {spec.depth}, levels {spec.levels}, R {spec.recursions})")
    return spec, state


# ---------------------------------------------------------------- MatConvNet import


def _mat_params(path: Path) -> dict:
    """name -> float32 array of every parameter in a MatConvNet DagNN file."""
    import numpy as np
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


def _conv(value, cin: int, cout: int) -> torch.Tensor:
    """MatConvNet conv filters (kh, kw, in, out), squeezed by loadmat -> torch (out, in, kh, kw)."""
    t = torch.as_tensor(value).reshape(value.shape[0], value.shape[1], cin, cout)
    return t.permute(3, 2, 0, 1).contiguous()


def _deconv(value, cin: int, cout: int) -> torch.Tensor:
    """MatConvNet ConvTranspose filters (kh, kw, out, in) -> torch (in, out, kh, kw)."""
    t = torch.as_tensor(value).reshape(value.shape[0], value.shape[1], cout, cin)
    return t.permute(3, 2, 0, 1).contiguous()


def _bias(value) -> torch.Tensor:
    """Biases as 1-D float32 (loadmat squeezes a single bias to a scalar)."""
    return torch.as_tensor(value, dtype=torch.float32).reshape(-1)


def _branch_state(p: dict, src: str, dst: str, depth: int, convs: str, conv_step: int, conv_offset: int) -> dict:
    """State of one feature branch: D convs, the feature upsampler, the residual conv, img_up."""
    s = {}
    for d in range(depth):
        s[f"{dst}{convs}.{conv_step * d + conv_offset}.weight"] = _conv(p[f"{src}conv{d + 1}_f"], 64, 64)
        s[f"{dst}{convs}.{conv_step * d + conv_offset}.bias"] = _bias(p[f"{src}conv{d + 1}_b"])
    up = f"{dst}features.{2 * depth}" if convs == "features" else f"{dst}upsample"
    s[f"{up}.deconv.weight"] = _deconv(p[f"{src}upconv_f"], 64, 64)
    s[f"{up}.deconv.bias"] = _bias(p[f"{src}upconv_b"])
    s[f"{dst}residual.weight"] = _conv(p[f"{src}residual_conv_f"], 64, 1)
    s[f"{dst}residual.bias"] = _bias(p[f"{src}residual_conv_b"])
    s[f"{dst}image_up.deconv.weight"] = _deconv(p[f"{src}img_up_f"], 1, 1)
    return s


def load_mat(path: str | Path) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """Spec and state dict from the authors' LapSRN_x*.mat or MSLapSRN_D*R*.mat (+ _opts.mat)."""
    path = Path(path)
    p = _mat_params(path)
    if "input_conv_f" not in p:
        raise WeightsError(f"{path}: MatConvNet file without LapSRN parameters")
    state = {"input_conv.weight": _conv(p["input_conv_f"], 1, 64), "input_conv.bias": _bias(p["input_conv_b"])}
    if "upconv_f" in p:  # MS-LapSRN: one shared set of weights
        depth, recursions, skip = _mat_opts(path)
        spec = ModelSpec("MSLapSRN", depth, 3, recursions, skip, {"source": f"official {path.name}"})
        state.update(_branch_state(p, "", "", depth, "block.body", 2, 1))
    else:  # LapSRN: the authors number levels from the output, level{L} is the x2 level
        levels = sum(1 for k in p if k.endswith("_img_up_f"))
        depth = sum(1 for k in p if k.startswith("level1_conv") and k.endswith("_f"))
        spec = ModelSpec("LapSRN", depth, levels, extra={"source": f"official {path.name}"})
        for i in range(levels):
            state.update(_branch_state(p, f"level{levels - i}_", f"pyramid.{i}.", depth, "features", 2, 0))
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


def resolve(model: str | Path | None) -> Path:
    """Path of a model given by bundled name, file path, or None (the bundled default)."""
    if model is not None and (Path(model).exists() or Path(model).suffix):
        path = Path(model)
        if not path.exists():
            raise WeightsError(f"{path}: no such weights file")
        if not path.is_file():
            raise WeightsError(f"{path}: not a file")
        return path
    name = DEFAULT_MODEL if model is None else str(model)
    card = bundled_card(name)
    path = PACKAGE_WEIGHTS / card["file"]
    if not path.is_file() or sha256(path) != card["sha256"]:
        raise WeightsError(f"bundled model {name!r} is missing or corrupt (sha256 mismatch): reinstall lapsrn")
    return path


def load(model: str | Path | None = None) -> tuple[nn.Module, ModelSpec]:
    """Network in eval mode with weights from a bundled name, a .safetensors file or an official .mat."""
    path = resolve(model)
    if path.suffix.lower() == ".mat":
        spec, state = load_mat(path)
    else:
        spec, state = _load_safetensors(path)
    net = spec.build()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise WeightsError(f"{path}: tensors do not fit a {spec.arch} D{spec.depth}: {detail}") from None
    if any(not torch.isfinite(t).all() for t in state.values()):
        raise WeightsError(f"{path}: weights contain NaN or infinity")
    return net.eval(), spec


def convert(src: str | Path, dst: str | Path) -> ModelSpec:
    """Official .mat -> our safetensors, metadata included."""
    net, spec = load(src)
    save(net, dst, **spec.extra)
    return spec
