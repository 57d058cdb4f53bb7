"""The CPU inference engine: LapSRN and MS-LapSRN forward passes in NumPy and compiled kernels, without torch.

``models.py`` is the reference (plain PyTorch, for training, export and GPUs);
this package computes the same pyramid on a CPU, faster and with a fraction of
the start-up time and install size, and is tested equal to it
(``tests/test_engine.py``). It is what ``lapsrn upscale`` runs by default.

* ``winograd``: the convolutions by Winograd's minimal filtering (compiled
  transforms around BLAS matrix products), on zero-bordered feature maps.
* ``kernels``: those transforms, written for Numba; ``native``: their machine
  code, compiled once per machine and loaded without Numba.
* ``network``: the two architectures' forward passes built from those
  operations and a plain dict of NumPy weights.
"""

from .network import LapSRNEngine, MSLapSRNEngine, Network, build
from .winograd import blas_threads, map_threads, reuse_freed_memory, set_threads, threads, using_threads

__all__ = [
    "Network",
    "LapSRNEngine",
    "MSLapSRNEngine",
    "build",
    "map_threads",
    "reuse_freed_memory",
    "set_threads",
    "threads",
    "using_threads",
    "blas_threads",
]
