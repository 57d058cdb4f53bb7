"""Copy a trained model into the package as the bundled default, with its card (sha256, recipe, metrics).

    python scripts/bundle_model.py runs/stage2/model.safetensors --command "lapsrn train ..." \
        --metrics docs/results/default.json --name mslapsrn_d5r2

--metrics must be newer than the model file: metrics scored before the model existed describe
another model (scripts/train_default.sh bundles, scores the bundled file, then adds the metrics).
"""

import argparse
import json
from pathlib import Path

from lapsrn.weights import PACKAGE_WEIGHTS, load, save, sha256


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--name", default="mslapsrn_d5r2")
    ap.add_argument("--command", required=True, help="the training command(s) that made it")
    ap.add_argument("--metrics", type=Path, nargs="*", default=[], help="lapsrn evaluate --json outputs to record")
    ap.add_argument(
        "--data",
        default="T91 + BSDS200 (291 images), from scratch, no official weights used",
        help="how it was trained, in a few words (the card's training_data)",
    )
    args = ap.parse_args()
    for metrics in args.metrics:
        if metrics.stat().st_mtime < args.model.stat().st_mtime:
            ap.error(
                f"{metrics} is older than {args.model}: it scores an earlier model "
                "(bundle, run scripts/evaluate_default.sh, then bundle again with --metrics)"
            )

    net, spec = load(args.model)
    PACKAGE_WEIGHTS.mkdir(exist_ok=True)
    dst = PACKAGE_WEIGHTS / f"{args.name}.safetensors"
    save(net, dst, **spec.extra, training_command=args.command, licence="MIT (trained by the lapsrn project)")
    card = {
        "name": args.name,
        "file": dst.name,
        "sha256": sha256(dst),
        "arch": spec.arch,
        "depth": spec.depth,
        "recursions": spec.recursions,
        "skip": spec.skip,
        "scales": [2, 4, 8],
        "training_command": args.command,
        "training_data": args.data,
        "licence": "MIT",
    }
    if args.metrics:
        rows = [r for m in args.metrics for r in json.loads(m.read_text())["rows"]]
        card["metrics"] = {
            f"{r['dataset']}{' ' + r['degrade'] if r.get('degrade') else ''} x{r['scale']} {r['method']}": [
                round(r["psnr"], 2),
                round(r["ssim"], 4),
            ]
            for r in rows
        }
    (PACKAGE_WEIGHTS / f"{args.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"bundled {dst} ({dst.stat().st_size / 1e6:.2f} MB, sha256 {card['sha256'][:12]}...)")


if __name__ == "__main__":
    main()
