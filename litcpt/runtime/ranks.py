"""Which process is global rank 0, before and after the Trainer exists, under any launcher.

Lightning decides how a job was launched by its cluster environments (torchrun / TorchElastic, SLURM ``srun``, LSF,
MPI, or its own launcher); :func:`cluster_environment` asks them in the same order as Lightning's Trainer does, so
that litcpt's own files (``config.yaml``, ``anneal.json``, ...) are written by exactly the process that Lightning
will make global rank 0.
"""

from __future__ import annotations

import os

from lightning.fabric.plugins.environments import (
    ClusterEnvironment,
    LightningEnvironment,
    LSFEnvironment,
    MPIEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)


def cluster_environment() -> ClusterEnvironment:
    """The cluster environment Lightning's Trainer will pick (TorchElastic first: torchrun may run inside SLURM)."""
    for env_type in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment):
        if env_type.detect():
            return env_type()
    return LightningEnvironment()


def global_rank() -> int:
    """This process's global rank; 0 in a single process.

    - inside an initialised process group: ``torch.distributed.get_rank()``;
    - torchrun, SLURM, LSF, MPI: the rank the launcher gave (``RANK``, ``SLURM_PROCID``, ...);
    - Lightning's own launcher: ``RANK`` if set, else 0 only for local rank 0 of node 0 (``NODE_RANK`` /
      ``GROUP_RANK`` and ``LOCAL_RANK``); other processes report 1 (their exact rank is not known before the Trainer).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    env = cluster_environment()
    if not isinstance(env, LightningEnvironment):
        return int(env.global_rank())
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    return 0 if env.node_rank() == 0 and env.local_rank() == 0 else 1


def group_rank_world() -> tuple[int, int]:
    """``(rank, world size)`` in the initialised ``torch.distributed`` process group, else ``(0, 1)``: the ranks that
    share the work of a collective call (data sharding, gathers) right now."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def world_size() -> int:
    """Processes in this job: the initialised process group's size, else what the launcher says (``WORLD_SIZE``,
    ``SLURM_NTASKS``, ... through Lightning's cluster environments), else 1."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    env = cluster_environment()
    if not isinstance(env, LightningEnvironment):
        return int(env.world_size())
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_global_zero() -> bool:
    """True in the one process that is (or will be) global rank 0."""
    return global_rank() == 0
