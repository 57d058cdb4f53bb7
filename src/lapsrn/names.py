"""Model names as users type them: one rule for ``lapsrn.load``, ``-m`` and ``report -m``.

Kept apart from weights.py so that ``lapsrn --help`` can list the names without importing torch.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "mslapsrn_d5r2"  # the bundled model, trained from scratch by this project
BUNDLED_DIR = Path(__file__).resolve().parent / "weights"


def bundled_names() -> list[str]:
    """Names of the models shipped inside the package (one JSON card each)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.json"))


def resolve_model_name(name: str | Path | None) -> str | Path:
    """None or 'default' -> the bundled default; a bundled name in any case -> that name; else a file path.

    An existing file wins over a bundled name, so a user's own file called like a
    bundled model is never shadowed by it.
    """
    if name is None or str(name).lower() == "default":
        return DEFAULT_MODEL
    if Path(name).exists() or Path(name).suffix:
        return Path(name)
    for bundled in bundled_names():
        if str(name).lower() == bundled.lower():
            return bundled
    return Path(name)
