"""Where a figure was measured: the machine, as the README and the model cards state it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def machine_description() -> str:
    """The machine figures were measured on, as the README states it (CPU, cores, GPU, torch)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, Python {platform.python_version()}"
