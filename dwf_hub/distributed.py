"""The processes of a multi-process launch (``torchrun``, ``accelerate launch``) as accelerate sees them.

accelerate's ``PartialState()`` only forms a CPU process group (gloo) when asked for ``cpu=True``: created
with the default on a machine without an accelerator, the ranks of ``torchrun --nproc_per_node 2`` would each
believe they are alone and all do the whole job. Every dwf_hub stage asks here instead.
"""

from __future__ import annotations

import os


def use_cpu() -> bool:
    """Whether the job runs on CPUs: no CUDA device, or the launcher said so (``accelerate launch --cpu``)."""
    import torch

    return not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in (
        "1",
        "true",
        "yes",
    )


def process_state():
    """accelerate's ``PartialState`` of this job (one process group for every stage of a run)."""
    from accelerate import PartialState

    return PartialState(cpu=use_cpu())
