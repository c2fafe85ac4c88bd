"""The processes of a multi-process launch (``torchrun``, ``accelerate launch``) as accelerate sees them.

accelerate's ``PartialState()`` only forms a CPU process group (gloo) when asked for ``cpu=True``: created
with the default on a machine without an accelerator, the ranks of ``torchrun --nproc_per_node 2`` would each
believe they are alone and all do the whole job. Every dwf_hub stage asks here instead.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def use_cpu() -> bool:
    """Whether the job runs on CPUs: no CUDA device, or the launcher said so (``accelerate launch --cpu``)."""
    import torch

    return not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in (
        "1",
        "true",
        "yes",
    )


def check_device(device: object) -> torch.device:
    """``device`` (a name or ``torch.device``; ``None``: CPU) as a ``torch.device`` that can run work here;
    an unknown name, ``meta``, or an accelerator this machine lacks is one clear error."""
    import torch

    from .errors import DWFError

    try:
        dev = torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError) as e:
        raise DWFError(f"device {device!r}: not a torch device name (e.g. cpu, cuda, cuda:1)") from e
    if dev.type == "meta":
        raise DWFError("device 'meta': holds no data; use cpu or an accelerator")
    if dev.type != "cpu":
        module = getattr(torch, dev.type, None)
        count = module.device_count() if module is not None and hasattr(module, "device_count") else 0
        if count == 0 or (dev.index is not None and dev.index >= count):
            raise DWFError(f"device {device!r}: this machine has {count} {dev.type} device(s)")
    return dev


def process_state():
    """accelerate's ``PartialState`` of this job (one process group for every stage of a run)."""
    from accelerate import PartialState

    return PartialState(cpu=use_cpu())
