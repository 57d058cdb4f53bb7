"""Training curve (loss and validation PSNR against step) from a training log.csv, as a PNG."""

from __future__ import annotations

import csv
from pathlib import Path


def plot_log(log: Path, out: Path) -> None:
    """Two panels: training loss (log scale) and validation PSNR per folder."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("plotting needs matplotlib: pip install 'lapsrn[plot]'") from None
    from .io import atomic_path

    if not log.is_file():
        raise ValueError(f"{log}: no such training log")
    rows = list(csv.DictReader(open(log)))
    if not rows:
        raise ValueError(f"{log}: no logged steps yet")
    steps = [int(r["step"]) for r in rows]
    folders = [k for k in rows[0] if k not in ("step", "loss", "lr", "seconds")]
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(steps, [float(r["loss"]) for r in rows])
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    for name in folders:
        ax_psnr.plot(steps, [float(r[name]) for r in rows], marker="o", label=name)
    ax_psnr.set(xlabel="step", ylabel="PSNR (dB, protocol)", title="validation")
    ax_psnr.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
