"""Markdown table (rows: method x scale, columns: datasets) from `lapsrn evaluate --json` files."""

import json
import sys
from collections import defaultdict


def main(paths: list[str]) -> None:
    cells: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
    datasets: list[str] = []
    for path in paths:
        with open(path) as f:
            rows = json.load(f)["rows"]
        for row in rows:
            if row["dataset"] not in datasets:
                datasets.append(row["dataset"])
            cells[(row["method"], row["scale"])][row["dataset"]] = f"{row['psnr']:.2f} / {row['ssim']:.4f}"
    print("| method | scale | " + " | ".join(datasets) + " |")
    print("|---|---|" + "---|" * len(datasets))
    for (method, scale), by_set in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0] != "bicubic", kv[0][0])):
        print(f"| {method} | x{scale} | " + " | ".join(by_set.get(d, "") for d in datasets) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
