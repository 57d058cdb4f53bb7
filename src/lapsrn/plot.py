"""Training curves (loss and validation PSNR against step) from training log.csv files, as a PNG."""

from __future__ import annotations

import csv
from pathlib import Path


def _rows(log: Path) -> list[dict[str, str]]:
    """Rows of one log.csv, or a clear error."""
    if not log.is_file():
        raise ValueError(f"{log}: no such training log")
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{log}: no logged steps yet")
    return rows


def plot_logs(logs: list[Path], out: Path) -> None:
    """Two panels: training loss (log scale) and validation PSNR per folder, one line per run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("plotting needs matplotlib: pip install 'lapsrn[plot]'") from None
    from .io import atomic_path

    adversarial = any("d_loss" in _rows(log)[0] for log in logs)
    fig, axes = plt.subplots(1, 3 if adversarial else 2, figsize=(15 if adversarial else 10, 4))
    ax_loss, ax_psnr = axes[0], axes[1]
    names = [log.parent.name for log in logs]
    if len(set(names)) < len(logs):  # logs side by side in one folder: tell them apart by file name
        names = [log.stem for log in logs]
    for log, name in zip(logs, names):
        rows = _rows(log)
        run = name if len(logs) > 1 else ""
        steps = [int(r["step"]) for r in rows]
        ax_loss.plot(steps, [float(r["loss"]) for r in rows], label=run or "train")
        for col in [k for k in rows[0] if k not in ("step", "loss", "lr", "seconds", "d_loss", "d_acc")]:
            ax_psnr.plot(steps, [float(r[col]) for r in rows], marker="o", label=f"{run} {col}".strip())
        for col in ("d_loss", "d_acc"):
            if col in rows[0]:  # the adversarial variant's discriminator
                axes[2].plot(steps, [float(r[col]) for r in rows], marker=".", label=f"{run} {col}".strip())
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    ax_psnr.set(xlabel="step", ylabel="PSNR (dB, protocol)", title="validation")
    ax_loss.legend()
    if adversarial:
        axes[2].set(xlabel="step", title="discriminator: loss and accuracy")
        axes[2].legend()
    if ax_psnr.lines:  # runs trained with --no-val have no PSNR columns
        ax_psnr.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
