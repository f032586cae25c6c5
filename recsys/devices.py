"""Where a model trains: the ``device`` option of the encoder's and SASRec's training."""

from __future__ import annotations

import re
from typing import Any

from recsys.errors import ConfigError

DEVICES = "cpu, cuda, cuda:N or auto"


def check_device(name: str, owner: str) -> None:
    """Refuse a device name that is not cpu, cuda, cuda:N or auto (auto: CUDA where torch sees a GPU)."""
    if not re.fullmatch(r"cpu|auto|cuda(:\d+)?", name):
        raise ConfigError(f"{owner}: device must be {DEVICES}, not {name!r}")


def torch_device(name: str, owner: str) -> Any:
    """The ``torch.device`` that ``name`` asks for; CUDA asked for where torch sees none is refused."""
    import torch

    check_device(name, owner)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{owner}: device {name!r} asked for, but torch sees no CUDA GPU here")
    return torch.device(name)
