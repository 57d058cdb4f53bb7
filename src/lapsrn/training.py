"""``lapsrn train``: the papers' recipe and a faster one, resumable, data-parallel with torchrun.

Config is one dataclass (``TrainConfig``), filled from a preset, then a JSON
file, then command-line flags. Every ``val_every`` steps we score Set5/Set14
with the evaluation protocol, append a CSV row, and write a checkpoint
atomically (model, optimiser, scheduler, RNG states, step), so killing the
process at any moment leaves the previous checkpoint intact and ``--resume``
continues to the same result as an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from . import evaluate as E
from .config import PRESETS, TrainConfig, make_config  # noqa: F401 (re-exported for users of training)
from .data import PatchSampler, batches, load_y_images, make_pyramid
from .imaging import super_resolve
from .inference import Upscaler
from .losses import pyramid_loss
from .models import LapSRN, MSLapSRN

def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """The network a config describes, freshly initialised; img_up always starts bilinear.

    ``paper``: the authors' init_MSLapSRN_model.m -- input conv N(0, 1e-3), other
    convs N(0, sqrt(2 / (9 * 64))), zero biases. ``kaiming``: He normal with the
    LeakyReLU gain on every conv, zero biases.
    """
    levels = int(math.log2(max(cfg.scales)))
    net = (
        MSLapSRN(cfg.depth, cfg.recursions, cfg.skip, levels)  # type: ignore[arg-type]
        if cfg.arch == "MSLapSRN"
        else LapSRN(levels, cfg.depth)
    )
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.weight.shape[0] * m.weight.shape[1] > 1:
            if cfg.init_scheme == "paper":
                torch.nn.init.normal_(m.weight, std=math.sqrt(2 / (9 * 64)))
            else:
                torch.nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    if cfg.init_scheme == "paper":
        torch.nn.init.normal_(net.input_conv.weight, std=1e-3)
    return net


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of a step: linear warm-up, then step halving or cosine, floored at lr_min."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "step":
        return max(cfg.lr * 0.5 ** (step // cfg.lr_step), cfg.lr_min)
    t = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(t, 1.0)))


def make_optimizer(cfg: TrainConfig, net: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (paper) or Adam."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def validate(net: torch.nn.Module, cfg: TrainConfig, images: dict[str, list], device: str) -> dict[str, float]:
    """Mean protocol PSNR per validation folder at cfg.val_scale."""
    net.eval()
    up = Upscaler(net, device=device)
    result = {}
    for name, hrs in images.items():
        scores = [E.evaluate_image(str(i), hr, cfg.val_scale, lambda lr, s: super_resolve(up, lr, s)) for i, hr in enumerate(hrs)]
        result[name] = E.mean_scores(scores)["psnr"]
    net.train()
    return result


def _save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temp file, fsync, rename: a crash leaves the old checkpoint whole."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _device(cfg: TrainConfig) -> str:
    """cfg.device with "auto" resolved; under torchrun each rank takes its local GPU."""
    if cfg.device == "auto":
        return f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu"
    return cfg.device


def _distributed() -> tuple[int, int]:
    """(rank, world size), initialising the process group under torchrun."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _average_gradients(net: torch.nn.Module, world: int) -> None:
    """Data parallelism: one all_reduce of all gradients, then divide by the world size.

    torch's DistributedDataParallel wrapper cannot be used here: MS-LapSRN uses
    one block at every level and we run one forward per scale before a single
    backward, so a parameter's gradient hook fires many times per step, which
    DDP's reducer rejects. Averaging the flat gradient once per step is the
    same arithmetic (minus bucketed overlap, irrelevant for 0.2 M parameters).
    """
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def train(cfg: TrainConfig, resume: bool = False, quiet: bool = False) -> Path:
    """Run (or continue) training; returns the output folder."""
    from .io import read_image
    from .weights import save

    rank, world = _distributed()
    if cfg.batch % (len(cfg.scales) * world):
        raise ValueError(f"batch {cfg.batch} must split evenly over {len(cfg.scales)} scales x {world} ranks")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    device = _device(cfg)
    torch.manual_seed(cfg.seed)
    net = build_model(cfg)
    if cfg.init:
        from .weights import load

        net.load_state_dict(load(cfg.init)[0].state_dict())
    net.to(device)
    torch.backends.cudnn.benchmark = True  # fixed patch shapes: let cuDNN pick its fastest kernels
    opt = make_optimizer(cfg, net)
    images = load_y_images([Path(d) for d in cfg.train_dirs], cfg.patch + 1)
    sampler = PatchSampler(images, cfg.patch, cfg.scales, cfg.seed, cfg.batch)
    step = 0
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        step = ckpt["step"]
    elif rank == 0:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        with open(out / "log.csv", "w", newline="") as f:
            csv.writer(f).writerow(["step", "loss", "lr", "seconds", *[Path(d).name for d in cfg.val_dirs]])
    if world > 1:  # start every rank from rank 0's weights
        for t in net.state_dict().values():
            dist.broadcast(t, 0)
    val_images = {Path(d).name: [read_image(p).pixels for p in E.image_files(Path(d))] for d in cfg.val_dirs} if rank == 0 else {}
    progress = None
    if rank == 0 and not quiet:
        from tqdm import tqdm

        progress = tqdm(total=cfg.steps, initial=step, unit="step", dynamic_ncols=True)
    net.train()
    window: list[float] = []
    start = time.perf_counter()
    for batch in batches(sampler, step, cfg.steps, cfg.workers, pin=device.startswith("cuda")):
        lr = lr_at(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        loss_total = torch.zeros((), device=device)
        opt.zero_grad(set_to_none=True)
        for scale, hr in batch:
            shard = (hr.chunk(world)[rank] if world > 1 else hr).to(device, non_blocking=True)
            levels = int(math.log2(scale))
            pyr = make_pyramid(shard, levels)
            preds = net(pyr.lr, levels)
            loss_total = loss_total + pyramid_loss(preds, pyr.targets, cfg.loss, cfg.reduction)  # type: ignore[arg-type]
        loss_total.backward()
        loss_value = loss_total.detach().clone()
        if world > 1:
            _average_gradients(net, world)
            dist.all_reduce(loss_value)
            loss_value /= world
        if cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
        opt.step()
        step += 1
        window.append(float(loss_value))
        if progress:
            progress.update(1)
            progress.set_postfix(loss=f"{np.mean(window[-50:]):.4f}", lr=f"{lr:.2e}")
        if step % cfg.val_every == 0 or step == cfg.steps:
            if rank == 0:
                psnrs = validate(net, cfg, val_images, device)
                with open(out / "log.csv", "a", newline="") as f:
                    row = [step, f"{np.mean(window):.6f}", f"{lr:.3e}", f"{time.perf_counter() - start:.1f}"]
                    csv.writer(f).writerow(row + [f"{psnrs[Path(d).name]:.4f}" for d in cfg.val_dirs])
                window = []
                state = {"model": net.state_dict(), "optimizer": opt.state_dict(),
                         "torch_rng": torch.get_rng_state(), "step": step, "config": asdict(cfg)}
                _save_checkpoint(ckpt_path, state)
                save(net, out / "model.safetensors", trained_by=f"lapsrn train, {step} steps",
                     recipe=json.dumps({k: v for k, v in asdict(cfg).items() if k not in ("train_dirs", "val_dirs", "out")}))
                if progress:
                    progress.write(f"step {step}: " + ", ".join(f"{k} {v:.2f} dB" for k, v in psnrs.items()))
            if world > 1:
                dist.barrier()
    if progress:
        progress.close()
    return out
