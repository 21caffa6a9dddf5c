"""The one device helper every timed section uses."""

from __future__ import annotations

import torch


def sync(device: torch.device) -> None:
    """Wait until the device has finished its queued work, so a wall-clock reading covers it (CUDA
    runs asynchronously); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
