"""Can the discriminator tell the bundled default's x2/x4/x8 outputs from HR patches? Raw intensities vs detail.

A fresh ``lapsrn.models.Discriminator`` trains against the frozen default for STEPS steps of 16 patches of
64 px (T91 + BSDS200, seed 0), Adam at 4e-4, betas (0.5, 0.999), as in ``lapsrn train --adversarial``; once
judging the patches as they are, once judging their detail (the model's own input: patch minus its 3x3
mean, x10). Prints the loss and accuracy over each block of 20 steps (2 ln 2 = 1.386 and 0.5: chance).
Usage: python scripts/discriminator_probe.py [DATA] [STEPS]   (defaults ../shared/datasets, 120)
"""

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from lapsrn.data import PatchSampler, load_y_images, make_pyramid
from lapsrn.models import Discriminator
from lapsrn.weights import load


def main(data: Path, steps: int) -> None:
    torch.set_num_threads(2)
    sampler = PatchSampler(load_y_images([data / "train/T91", data / "train/BSDS200"], 65), 64, [2, 4, 8], 0, 16, None)
    generator = load("default")[0].eval()
    for judged in ("raw intensities", "detail"):
        torch.manual_seed(0)
        disc = Discriminator()
        opt = torch.optim.Adam(disc.parameters(), lr=4e-4, betas=(0.5, 0.999))
        score = disc if judged == "detail" else lambda x: disc.classifier(disc.features(x))[:, 0]
        block = []
        for step in range(steps):
            reals, fakes = [], []
            for scale, hr, _ in sampler[step]:
                pyr = make_pyramid(hr, int(math.log2(scale)))
                with torch.no_grad():
                    fakes.append(generator(pyr.lr, int(math.log2(scale)))[-1])
                reals.append(pyr.targets[-1])
            real, fake = score(torch.cat(reals)), score(torch.cat(fakes))
            loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            loss = loss + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
            opt.zero_grad()
            loss.backward()
            opt.step()
            block.append((loss.item(), ((real > 0).float().mean() + (fake < 0).float().mean()).item() / 2))
            if (step + 1) % 20 == 0:
                print(
                    f"{judged}: steps {step - 18}-{step + 1}: loss {sum(b[0] for b in block) / 20:.3f}, "
                    f"accuracy {sum(b[1] for b in block) / 20:.2f}",
                    flush=True,
                )
                block = []


if __name__ == "__main__":
    main(
        Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets"), int(sys.argv[2]) if len(sys.argv) > 2 else 120
    )
