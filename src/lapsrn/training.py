"""``lapsrn train``: the papers' recipe and a faster one, crash-safe, exactly resumable, data-parallel with torchrun.

Config is one dataclass (``TrainConfig``), filled from a preset, then a JSON
file, then command-line flags. ``checkpoint.pt`` is the run's one source of
truth: weights, optimiser, RNG state, step, config and the log's rows. It is
written atomically (temp file, fsync, rename) at step 0, every ``val_every``
steps (after scoring the validation folders) and when SIGINT or SIGTERM
arrives; ``model.safetensors`` and ``log.csv`` are then rewritten from it, and
again on every resume, so they always catch up with the checkpoint. A run
resumed from any checkpoint reaches bit-identical weights on the CPU, because
batch k depends only on (seed, k) and validation runs on a copy of the
network, leaving the training network's memory layout untouched.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from . import evaluate as E
from .api import Upscaler
from .colour import super_resolve
from .config import PRESETS, TrainConfig, check_batch, make_config, resume_mismatches  # noqa: F401 (re-exported)
from .data import PatchSampler, batches, load_y_images, make_pyramid
from .losses import pyramid_loss
from .models import Discriminator, LapSRN, MSLapSRN, OneStep

RUN_FILES = ("config.json", "log.csv", "checkpoint.pt", "model.safetensors")
LOG_COLUMNS = ["step", "loss", "lr", "seconds"]
ADVERSARIAL_COLUMNS = ["d_loss", "d_acc"]  # the discriminator's, when --adversarial > 0


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived: the run was checkpointed at its current step and stopped."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """The network a config describes, freshly initialised; img_up always starts bilinear.

    ``paper``: the authors' init_MSLapSRN_model.m -- input conv N(0, 1e-3), other
    convs N(0, sqrt(2 / (9 * 64))), zero biases. ``kaiming``: He normal with the
    LeakyReLU gain on every conv, zero biases.
    """
    levels = int(math.log2(max(cfg.scales)))
    if cfg.arch == "MSLapSRN":
        net: torch.nn.Module = MSLapSRN(cfg.depth, cfg.recursions, cfg.skip, levels)
    elif cfg.arch == "OneStep":
        net = OneStep(levels, cfg.depth)
    else:
        net = LapSRN(levels, cfg.depth, sharing=cfg.sharing, reconstruction=cfg.reconstruction)
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


def make_discriminator(cfg: TrainConfig) -> tuple[torch.nn.Module, torch.optim.Optimizer] | tuple[None, None]:
    """The adversarial variant's discriminator and its Adam (DCGAN's betas), or (None, None) without it."""
    if cfg.adversarial <= 0:
        return None, None
    disc = Discriminator()
    return disc, torch.optim.Adam(disc.parameters(), lr=cfg.d_lr, betas=(0.5, 0.999))


def _device(cfg: TrainConfig) -> str:
    """cfg.device with "auto" resolved; under torchrun each rank takes its local GPU."""
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise ValueError("--device cuda: this machine has no usable CUDA GPU (use --device auto or cpu)")
    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"


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


def validate(net: torch.nn.Module, cfg: TrainConfig, images: dict[str, list], device: str) -> dict[str, float]:
    """Mean protocol PSNR per validation folder at cfg.val_scale, leaving training exactly as it was.

    The Upscaler copies the weights (into the CPU engine, or a fresh module on a GPU): the training
    network's layout, state and torch's thread count stay as they were, so a resumed run does not
    drift from one that never stopped.
    """
    threads = torch.get_num_threads()
    up = Upscaler(net, device=device)
    result = {}
    try:
        for name, hrs in images.items():
            scores = [
                E.evaluate_image(str(i), hr, cfg.val_scale, lambda lr, s: super_resolve(up, lr, s))
                for i, hr in enumerate(hrs)
            ]
            result[name] = E.mean_scores(scores)["psnr"]
    finally:
        torch.set_num_threads(threads)
    return result


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename: a crash leaves the old file whole; disk full is one line naming the file."""
    from .io import atomic_path

    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise RuntimeError(f"cannot write {path}: {e.strerror or e} (its previous version is kept)") from None


def _model_bytes(net: torch.nn.Module, cfg: TrainConfig, step: int) -> bytes:
    """model.safetensors's content: the weights with their spec and recipe."""
    from safetensors.torch import save as safetensors_bytes

    from .weights import spec_of

    recipe = json.dumps({k: v for k, v in asdict(cfg).items() if k not in ("train_dirs", "val_dirs", "out")})
    spec = spec_of(net, trained_by=f"lapsrn train, {step} steps", recipe=recipe)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return safetensors_bytes(tensors, metadata=spec.metadata())


def _log_bytes(cfg: TrainConfig, rows: list[list[str]]) -> bytes:
    """log.csv's content: one row per checkpoint of the log (step, loss, lr, seconds, PSNR per folder)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    adversarial = ADVERSARIAL_COLUMNS if cfg.adversarial > 0 else []
    writer.writerow(LOG_COLUMNS + adversarial + [Path(d).name for d in cfg.val_dirs])
    writer.writerows(rows)
    return text.getvalue().encode()


def write_checkpoint(
    out: Path,
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    progress: dict,
    disc: tuple[torch.nn.Module, torch.optim.Optimizer] | None = None,
) -> None:
    """checkpoint.pt, then model.safetensors and log.csv from the same state.

    ``progress``: step, log rows, the losses since the last row and the
    training seconds so far -- all a resumed run needs to go on as if it had
    never stopped. A kill between the three writes leaves the derived files
    one checkpoint behind; the next start rewrites them (``write_derived``).
    """
    state = {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "config": asdict(cfg),
        **progress,
    }
    if disc is not None:  # the adversarial variant: both networks and both optimisers, so resume stays exact
        state.update(discriminator=disc[0].state_dict(), d_optimizer=disc[1].state_dict())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(out / "checkpoint.pt", buffer.getvalue())
    write_derived(out, net, cfg, progress)


def write_derived(out: Path, net: torch.nn.Module, cfg: TrainConfig, progress: dict) -> None:
    """model.safetensors and log.csv as of the checkpoint described by ``progress``."""
    write_atomically(out / "model.safetensors", _model_bytes(net, cfg, progress["step"]))
    write_atomically(out / "log.csv", _log_bytes(cfg, progress["log"]))


def _check_folders(cfg: TrainConfig) -> None:
    """Every data folder exists, or one line saying which and what to give instead."""
    for d in cfg.train_dirs:
        if not Path(d).is_dir():
            raise ValueError(
                f"{d}: no such training folder (give --train-dirs DIR..., or set LAPSRN_SHARED "
                "to the folder that holds datasets/)"
            )
    for d in cfg.val_dirs:
        if not Path(d).is_dir():
            raise ValueError(f"{d}: no such validation folder (give --val-dirs DIR..., or --no-val)")


def _load_checkpoint(path: Path, cfg: TrainConfig, device: str) -> dict:
    """The checkpoint to resume from, refused when the given config would change the result."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path}: not a readable checkpoint ({str(e).strip().splitlines()[0]})") from None
    needed = {"config", "step", "model", "optimizer", "log"} | (
        {"discriminator", "d_optimizer"} if cfg.adversarial > 0 else set()
    )
    if not isinstance(ckpt, dict) or not needed <= set(ckpt):
        raise ValueError(f"{path}: not a checkpoint of this version of lapsrn train")
    mismatches = resume_mismatches(ckpt["config"], cfg)
    if mismatches:
        raise ValueError(
            f"{path}: --resume with settings that change the result: {', '.join(mismatches)}; give the "
            f"run's own settings (e.g. --config {path.parent / 'config.json'}) or a new --out"
        )
    if ckpt["step"] > cfg.steps:
        raise ValueError(f"{path}: the checkpoint is at step {ckpt['step']}, beyond --steps {cfg.steps}")
    return ckpt


def _open_run(cfg: TrainConfig, resume: bool, overwrite: bool, device: str) -> dict | None:
    """The checkpoint to resume from, or None for a new run; refuses to replace a run unless told to.

    Only checks and reads: nothing in the folder changes before the data is loaded too.
    """
    out = Path(cfg.out)
    existing = [n for n in RUN_FILES if (out / n).exists()]
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other: choose one")
    if existing and not (resume or overwrite):
        raise ValueError(
            f"{out} already holds a training run ({', '.join(existing)}): add --resume to continue it "
            "or --overwrite to replace it"
        )
    if resume and (out / "checkpoint.pt").exists():
        return _load_checkpoint(out / "checkpoint.pt", cfg, device)
    if resume:
        print(f"lapsrn: no checkpoint in {out} yet: starting at step 0", file=sys.stderr)
    return None


def _start_files(
    out: Path,
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    progress: dict,
    started: float,
    fresh: bool,
    disc: tuple[torch.nn.Module, torch.optim.Optimizer] | None = None,
) -> None:
    """The run folder as the run begins: no stale temp files, config.json, and the checkpoint with its files.

    A new run replaces any earlier run's files and checkpoints step 0 at once,
    so even a kill before the first ``val_every`` steps leaves a run to resume.
    """
    out.mkdir(parents=True, exist_ok=True)
    from .io import remove_stale_temps

    remove_stale_temps(out)  # lapsrn's temp files whose writer died (a kill leaves them)
    if fresh:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    write_atomically(out / "config.json", json.dumps(asdict(cfg), indent=2).encode())
    if fresh:
        write_checkpoint(out, net, opt, cfg, progress, disc)
    else:
        write_derived(out, net, cfg, progress)


class StopRequest:
    """The signal (SIGINT or SIGTERM) that asked training to stop, 0 while none has."""

    def __init__(self) -> None:
        self.signum = 0

    def set(self, signum: int, frame: object) -> None:
        """The signal handler: remember, and let the loop end its step, checkpoint and stop."""
        self.signum = signum

    def agreed(self, world: int, device: str) -> int:
        """The signal to stop for, 0 if none; every rank stops at the same step (one tiny all_reduce)."""
        if world == 1:
            return self.signum
        flag = torch.tensor(float(self.signum), device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag)


@contextmanager
def stop_signals() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM set a flag instead of killing the process, until the block ends."""
    request, previous = StopRequest(), {}
    if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
        previous = {s: signal.signal(s, request.set) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _train_step(
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    batch: list,
    lr: float,
    rank: int,
    world: int,
    device: str,
    disc: tuple[torch.nn.Module, torch.optim.Optimizer] | None = None,
) -> list[float]:
    """One optimiser step on a global batch (this rank's slice of each scale's share).

    Returns [mean pyramid loss], plus the discriminator's [loss, accuracy] in
    the adversarial variant: the generator's step adds ``cfg.adversarial`` times
    the non-saturating GAN loss of its last-level outputs, then the
    discriminator takes one step on those outputs against the HR patches.
    """
    for g in opt.param_groups:
        g["lr"] = lr
    loss_total = torch.zeros((), device=device)
    opt.zero_grad(set_to_none=True)
    fakes, reals = [], []
    for scale, hr, degraded in batch:
        shard = (hr.chunk(world)[rank] if world > 1 else hr).to(device, non_blocking=True)
        levels = int(math.log2(scale))
        pyr = make_pyramid(shard, levels)
        if degraded is not None:  # the input degraded, the targets the clean pyramid
            pyr.lr = (degraded.chunk(world)[rank] if world > 1 else degraded).to(device, non_blocking=True)
        preds = net(pyr.lr, levels)  # a one-step network predicts the last level only
        loss_total = loss_total + pyramid_loss(preds, pyr.targets[-len(preds) :], cfg.loss, cfg.reduction)
        fakes.append(preds[-1])
        reals.append(pyr.targets[-1])
    objective = loss_total
    if disc is not None:
        disc[0].requires_grad_(False)  # the generator's step leaves the discriminator's gradients alone
        logits = disc[0](torch.cat(fakes))
        objective = objective + cfg.adversarial * F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        disc[0].requires_grad_(True)
    objective.backward()
    values = [loss_total.detach().clone()]
    if world > 1:
        _average_gradients(net, world)
    if cfg.clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
    opt.step()
    if disc is not None:
        values += _discriminator_step(disc, torch.cat(reals), torch.cat(fakes).detach(), world)
    if world > 1:
        for v in values:
            dist.all_reduce(v)
            v /= world
    return [float(v) for v in values]


def _discriminator_step(
    disc: tuple[torch.nn.Module, torch.optim.Optimizer], real: torch.Tensor, fake: torch.Tensor, world: int
) -> list[torch.Tensor]:
    """One step of the discriminator: HR patches are real, the generator's outputs fake; (loss, accuracy)."""
    model, d_opt = disc
    d_opt.zero_grad(set_to_none=True)
    real_logits, fake_logits = model(real), model(fake)
    loss = F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    loss.backward()
    if world > 1:
        _average_gradients(model, world)
    d_opt.step()
    accuracy = ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()) / 2
    return [loss.detach(), accuracy.detach()]


def _val_images(cfg: TrainConfig) -> dict[str, list[np.ndarray]]:
    """The validation folders' images by folder name, decoded once."""
    from .io import read_image

    images = {}
    for d in cfg.val_dirs:
        files = E.image_files(Path(d))
        if not files:
            raise ValueError(f"{d}: no images to validate on")
        images[Path(d).name] = [read_image(p).pixels for p in files]
    return images


@dataclass
class Run:
    """A training run set up and ready for its loop: rank 0 has checked and written the run folder."""

    cfg: TrainConfig
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    sampler: PatchSampler
    val_images: dict[str, list[np.ndarray]]
    progress: dict[str, Any]  # as of the last checkpoint: step, log rows, losses since the last row, seconds
    rank: int
    world: int
    device: str
    disc: tuple[torch.nn.Module, torch.optim.Optimizer] | None = None  # the adversarial variant's

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


def _setup(cfg: TrainConfig, resume: bool, overwrite: bool) -> Run:
    """Check everything, build the network, load the data, then start or resume the run folder."""
    started = time.time()
    rank, world = _distributed()
    check_batch(cfg.batch, cfg.scales, world)
    _check_folders(cfg)
    out = Path(cfg.out)
    device = _device(cfg)
    torch.manual_seed(cfg.seed)
    net = build_model(cfg)
    if cfg.init:
        from .weights import load

        net.load_state_dict(load(cfg.init)[0].state_dict())
    net.to(device)
    torch.backends.cudnn.benchmark = True  # fixed patch shapes: let cuDNN pick its fastest kernels
    opt = make_optimizer(cfg, net)
    d_net, d_opt = make_discriminator(cfg)
    disc = None if d_net is None else (d_net.to(device), d_opt)
    ckpt = _open_run(cfg, resume, overwrite, device) if rank == 0 else None
    images = load_y_images([Path(d) for d in cfg.train_dirs], cfg.patch + 1)
    sampler = PatchSampler(images, cfg.patch, cfg.scales, cfg.seed, cfg.batch, cfg.recipe())
    val_images = _val_images(cfg) if rank == 0 else {}
    progress = {"step": 0, "log": [], "window": [], "seconds": 0.0}
    if world > 1:  # the other ranks read the checkpoint rank 0 has checked
        dist.barrier()
        if rank > 0 and resume and (out / "checkpoint.pt").exists():
            ckpt = _load_checkpoint(out / "checkpoint.pt", cfg, device)
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        progress = {k: ckpt[k] for k in progress}
        if disc is not None:
            disc[0].load_state_dict(ckpt["discriminator"])
            disc[1].load_state_dict(ckpt["d_optimizer"])
    if rank == 0:
        _start_files(out, net, opt, cfg, progress, started, fresh=ckpt is None, disc=disc)
    if world > 1:  # start every rank from rank 0's weights
        for t in [*net.state_dict().values(), *(disc[0].state_dict().values() if disc else [])]:
            dist.broadcast(t, 0)
    return Run(cfg, net, opt, sampler, val_images, progress, rank, world, device, disc)


def _loop(run: Run, stop: StopRequest, quiet: bool, stop_at: int | None = None) -> int:
    """Train to cfg.steps (or to ``stop_at`` on the same schedule), checkpointing every val_every steps and at the
    end; returns the signal that stopped it early, or 0."""
    cfg, net = run.cfg, run.net
    bar = None
    if run.rank == 0 and not quiet:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=run.progress["step"], unit="step", dynamic_ncols=True)
    net.train()
    step = run.progress["step"]
    window = [w if isinstance(w, list) else [w] for w in run.progress["window"]]  # rows of [loss, d_loss, d_acc]
    clock = time.perf_counter() - run.progress["seconds"]
    loader = iter(batches(run.sampler, step, cfg.steps, cfg.workers, pin=run.device.startswith("cuda")))
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    while step < end and not stop.agreed(run.world, run.device):
        lr = lr_at(cfg, step)
        window.append(_train_step(net, run.opt, cfg, next(loader), lr, run.rank, run.world, run.device, run.disc))
        step += 1
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean([w[0] for w in window[-50:]]):.4f}", lr=f"{lr:.2e}")
        if step % cfg.val_every and step != cfg.steps:
            continue
        if run.rank == 0:
            psnrs = validate(net, cfg, run.val_images, run.device)
            means = np.mean(window, axis=0)  # loss, and the discriminator's loss and accuracy
            row = [str(step), f"{means[0]:.6f}", f"{lr:.3e}", f"{time.perf_counter() - clock:.1f}"]
            row += [f"{m:.4f}" for m in means[1:]]
            run.progress = {
                "step": step,
                "log": [*run.progress["log"], row + [f"{p:.4f}" for p in psnrs.values()]],
                "window": [],
                "seconds": time.perf_counter() - clock,
            }
            write_checkpoint(run.out, net, run.opt, cfg, run.progress, run.disc)
            window = []
            if bar and psnrs:
                bar.write(f"step {step}: " + ", ".join(f"{k} {v:.2f} dB" for k, v in psnrs.items()))
        if run.world > 1:
            dist.barrier()
    if bar:
        bar.close()
    if step == cfg.steps:
        return 0  # a signal after the last step stops nothing
    if run.rank == 0 and step != run.progress["step"]:  # stopped between checkpoints: checkpoint this step
        run.progress = {**run.progress, "step": step, "window": window, "seconds": time.perf_counter() - clock}
        write_checkpoint(run.out, net, run.opt, cfg, run.progress, run.disc)
    return 0 if step == end else stop.agreed(run.world, run.device)


def train(
    cfg: TrainConfig, resume: bool = False, overwrite: bool = False, quiet: bool = False, stop_at: int | None = None
) -> tuple[Path, int]:
    """Run (or continue) training; returns the output folder and the step its checkpoint holds (rank 0's).

    ``stop_at``: checkpoint and return after that step of the ``cfg.steps``
    schedule (the learning rate follows the whole schedule); resuming continues.
    A run resumed at or past ``stop_at`` trains nothing.

    SIGINT and SIGTERM, from the moment it is called, end in a checkpoint of
    the current step and ``TrainingInterrupted``; a config, folder or
    checkpoint it cannot use is a ValueError before anything is written.
    """
    with stop_signals() as stop:
        run = _setup(cfg, resume, overwrite)
        signum = _loop(run, stop, quiet, stop_at)
    if signum:
        raise TrainingInterrupted(
            signum,
            f"stopped by {signal.Signals(signum).name} at step {run.progress['step']}: "
            f"saved {run.out / 'checkpoint.pt'}; continue with the same command and --resume",
        )
    return run.out, run.progress["step"]
