"""The ablation studies' table, curves and verdicts from the logs scripts/ablations.sh leaves.

Reads docs/results/ablations/<study>-<variant>-s<seed>.csv (lapsrn train's log columns) and, for the
scales study, <study>-<variant>-s<seed>.json (lapsrn evaluate at x2, x4, x8); writes summary.md (the
table docs/ABLATIONS.md quotes) and <study>.png (the curves) beside them.

A verdict compares the difference of the variants' mean final Set5 x4 PSNR with the spread between
seeds: "within noise" when the difference is smaller than the largest seed-to-seed spread of either
variant (or below 0.02 dB); else "agrees" when the variant the paper found better is ahead, "disagrees"
when it is behind. Two seeds make a thin estimate of the noise: the spreads are printed beside it.
Usage: python scripts/ablations_report.py [docs/results/ablations]
       python scripts/ablations_report.py --longer docs/results/ablations-long   (a longer run of a pair)
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# study -> (the papers' claim, the variant they found better, the variants in the table's order)
CLAIMS = {
    "loss": ("Charbonnier beats L2", "charbonnier", ["charbonnier", "l2"]),
    "pyramid": (
        "the pyramid beats one-step upsampling with the same conv layers (+0.7 dB Set5, +0.4 dB Set14 at x4)",
        "progressive",
        ["progressive", "onestep"],
    ),
    "grl": (
        "global residual learning (the image branch) converges faster and steadier than predicting each HR image",
        "with",
        ["with", "without"],
    ),
    "sharing": (
        "sharing weights across levels halves the parameters at comparable accuracy",
        None,  # a claim of equality: within noise or a small loss agrees
        ["separate", "shared"],
    ),
    "lrl": ("local residual learning: SS > DS > NS", "ss", ["ns", "ds", "ss"]),
    "scales": ("multi-scale training on {2, 4, 8} beats single-scale training", "248", ["4", "248"]),
}
NOISE_FLOOR = 0.02  # dB: differences below this are within noise whatever the seeds say


def final_row(path: Path) -> dict[str, str]:
    """The last row of a training log."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))[-1]


def stats(values: list[float]) -> tuple[float, float]:
    """Mean and spread (max - min) over seeds."""
    return statistics.fmean(values), max(values) - min(values)


def verdict(study: str, results: dict[str, list[float]]) -> str:
    """Agrees, disagrees or within noise, from the mean final Set5 x4 PSNR of each variant."""
    _, better, order = CLAIMS[study]
    if any(v not in results for v in order):
        return "incomplete: " + ", ".join(v for v in order if v not in results) + " missing"
    means = {v: stats(results[v])[0] for v in order}
    noise = max(max(stats(results[v])[1] for v in means), NOISE_FLOOR)
    if better is None:  # sharing: comparable accuracy claimed
        gap = means["separate"] - means["shared"]
        return "agrees" if gap <= max(noise, 0.1) else f"disagrees (shared {gap:.2f} dB behind)"
    others = [v for v in means if v != better]
    gaps = [means[better] - means[o] for o in others]
    if all(abs(g) < noise for g in gaps):
        return "within noise"
    if study == "lrl":  # an ordering: check each neighbouring pair
        ordered = means["ss"] - means["ds"], means["ds"] - means["ns"]
        signs = ["agrees" if g >= noise else "within noise" if abs(g) < noise else "disagrees" for g in ordered]
        return f"SS vs DS {signs[0]}, DS vs NS {signs[1]}"
    return "agrees" if min(gaps) > 0 else "disagrees"


def scales_table(folder: Path) -> list[str]:
    """Mean PSNR at x2, x4, x8 of the scales study's models, from their evaluate JSON files."""
    lines = ["| variant | seed | Set5 x2 | Set5 x4 | Set5 x8 | Set14 x2 | Set14 x4 | Set14 x8 |", "|---" * 8 + "|"]
    for path in sorted(folder.glob("scales-*-s*.json")):
        rows = json.loads(path.read_text())["rows"]
        cell = {(r["dataset"], r["scale"]): r["psnr"] for r in rows if r["method"] != "bicubic"}
        variant, seed = path.stem.split("-")[1], path.stem.split("-s")[-1]
        values = [cell.get((d, s)) for d in ("Set5", "Set14") for s in (2, 4, 8)]
        lines.append(f"| {variant} | {seed} | " + " | ".join(f"{v:.2f}" if v else "" for v in values) + " |")
    return lines


def curves(study: str, logs: dict[str, list[Path]], order: list[str], out: Path) -> None:
    """Set5 and Set14 x4 PSNR against step: a colour per variant, a line style per seed."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for colour, variant in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], order):
        for style, path in zip(["-", "--", ":", "-."], logs.get(variant, [])):
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            steps = [int(r["step"]) for r in rows]
            for ax, col in zip(axes, ("Set5", "Set14")):
                seed = path.stem.rsplit("-s", 1)[1]
                ax.plot(
                    steps, [float(r[col]) for r in rows], style, color=colour, marker="o", label=f"{variant} s{seed}"
                )
    for ax, col in zip(axes, ("Set5", "Set14")):
        ax.set(xlabel="step", ylabel="PSNR (dB, protocol)", title=f"{study}: {col} x4")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(folder: Path) -> None:
    logs: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(folder.glob("*-s*.csv")):
        study, variant = path.stem.rsplit("-s", 1)[0].split("-", 1)
        logs[study][variant].append(path)
    lines = [
        "| study | variant | seeds | steps | Set5 x4 (mean, spread) | Set14 x4 (mean, spread) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for study, (claim, _, order) in CLAIMS.items():
        if study not in logs:
            continue
        set5 = {v: [float(final_row(p)["Set5"]) for p in logs[study][v]] for v in order if v in logs[study]}
        set14 = {v: [float(final_row(p)["Set14"]) for p in logs[study][v]] for v in order if v in logs[study]}
        steps = {v: final_row(logs[study][v][0])["step"] for v in set5}
        judged = verdict(study, set5)
        for i, v in enumerate(set5):
            m5, s5 = stats(set5[v])
            m14, s14 = stats(set14[v])
            lines.append(
                f"| {study if i == 0 else ''} | {v} | {len(set5[v])} | {steps[v]} | {m5:.2f} ({s5:.2f}) | "
                f"{m14:.2f} ({s14:.2f}) | {judged if i == 0 else ''} |"
            )
        curves(study, logs[study], order, folder / f"{study}.png")
    if list(folder.glob("scales-*-s*.json")):
        lines += ["", "Scales study, every scale (lapsrn evaluate of each run's model):", "", *scales_table(folder)]
    (folder / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def longer(folder: Path) -> None:
    """A longer run of some configurations (scripts/ablations.sh with ONLY): its PSNR at each checkpoint, the gap
    between its first two configurations at every step, and the curves (longer.png); summary.md beside the logs."""
    logs = sorted(folder.glob("*-s*.csv"))
    if len(logs) < 2:
        sys.exit(f"{folder}: a longer run needs the logs of two configurations")
    rows = {p.stem: {int(r["step"]): r for r in csv.DictReader(p.read_text().splitlines())} for p in logs}
    (a, ra), (b, rb) = list(rows.items())[:2]
    lines = [f"| step | {a} Set5 | {b} Set5 | gap Set5 | {a} Set14 | {b} Set14 | gap Set14 |", "|---" * 7 + "|"]
    for step in sorted(set(ra) & set(rb)):
        v = {col: (float(ra[step][col]), float(rb[step][col])) for col in ("Set5", "Set14")}
        lines.append(
            f"| {step} | {v['Set5'][0]:.2f} | {v['Set5'][1]:.2f} | {v['Set5'][1] - v['Set5'][0]:+.2f} "
            f"| {v['Set14'][0]:.2f} | {v['Set14'][1]:.2f} | {v['Set14'][1] - v['Set14'][0]:+.2f} |"
        )
    curves("longer run", {p.stem: [p] for p in logs}, [p.stem for p in logs], folder / "longer.png")
    (folder / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--longer"]:
        longer(Path(sys.argv[2]))
    else:
        main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/ablations"))
