"""Does the data pipeline keep up? Time drawing a batch (sampling, augmentation, LR/targets) against
one forward + backward of the network on it, with the settings of the bundled model's first stage.

    python scripts/measure_pipeline.py [--batch 48] [--patch 64] [--steps 10] [--degrade-clean 0.2]

--degrade-clean below 1 adds the degradations of the ``real`` model's training (blur, kernel, noise, JPEG).
"""

import argparse
import math
import time
from pathlib import Path

import torch

from lapsrn.data import PatchSampler, load_y_images, make_pyramid
from lapsrn.losses import pyramid_loss
from lapsrn.training import build_model, make_config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--degrade-clean", type=float, default=1.0)
    args = ap.parse_args()
    cfg = make_config("fast", batch=args.batch, patch=args.patch, degrade_clean=args.degrade_clean)
    images = load_y_images([Path(d) for d in cfg.train_dirs], cfg.patch + 1)
    sampler = PatchSampler(images, cfg.patch, cfg.scales, 0, cfg.batch, cfg.recipe())
    net = build_model(cfg)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    data_s, net_s = [], []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        groups = []
        for s, hr, lr in sampler[step]:
            pyr = make_pyramid(hr, int(math.log2(s)))
            if lr is not None:
                pyr.lr = lr
            groups.append((s, pyr))
        t1 = time.perf_counter()
        opt.zero_grad()
        loss = sum(pyramid_loss(net(p.lr, int(math.log2(s))), p.targets) for s, p in groups)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if step:  # the first step warms up
            data_s.append(t1 - t0)
            net_s.append(t2 - t1)
    d, n = sum(data_s) / len(data_s), sum(net_s) / len(net_s)
    degraded = f", degraded but {cfg.degrade_clean:.0%}" if cfg.recipe() else ""
    print(f"batch {cfg.batch} x {cfg.patch}px, scales {cfg.scales}{degraded}, {torch.get_num_threads()} threads")
    print(f"data  {d:.3f} s/step\nnet   {n:.3f} s/step\ndata share {100 * d / (d + n):.1f}%")


if __name__ == "__main__":
    main()
