"""Markdown table (rows: scale x method, columns: datasets) from `lapsrn evaluate --json` files.

The same table as `lapsrn evaluate` prints (``lapsrn.evaluate.summary_table``), over several runs.
"""

import json
import sys

from lapsrn.evaluate import summary_table


def main(paths: list[str]) -> None:
    """Print the table of every file's rows; ``--texture`` first adds the high-frequency energy ratio to each cell."""
    hf = paths[:1] == ["--texture"]
    paths = paths[hf:]
    rows = []
    for path in paths:
        with open(path) as f:
            rows += json.load(f)["rows"]
    print(summary_table(rows, hf=hf))


if __name__ == "__main__":
    main(sys.argv[1:])
