"""Which process of a distributed run this is, read the way Lightning reads it.

Under DDP, ``affectlab train`` runs once per device: Lightning's launcher starts the other ranks as copies of the
same command, and ``torchrun``/``srun`` start every rank themselves. Only rank zero may create, write or replace
files, so every writer asks here first.
"""

from __future__ import annotations

from lightning.fabric.utilities.rank_zero import rank_zero_only

__all__ = ["global_rank", "is_main_process"]


def global_rank() -> int:
    """This process's rank: set by the strategy during a fit, and from RANK/LOCAL_RANK/SLURM_PROCID before one."""
    return int(getattr(rank_zero_only, "rank", 0))


def is_main_process() -> bool:
    return global_rank() == 0
