"""One line describing the machine a benchmark ran on (shared by every benchmark script)."""
from __future__ import annotations

import os
import platform

import jax
import numpy as np


def describe() -> str:
    """CPU model, cores, library versions, the first JAX device and the load average."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = jax.devices()[0]
    load = ", load average %.2f %.2f %.2f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    try:
        import optax
        versions = f"jax {jax.__version__}, optax {optax.__version__}, numpy {np.__version__}"
    except ImportError:
        versions = f"jax {jax.__version__}, numpy {np.__version__}"
    return (f"{cpu}, {os.cpu_count()} cores, {versions}, device {device.platform}:{device.device_kind}, "
            f"python {platform.python_version()}{load}")
