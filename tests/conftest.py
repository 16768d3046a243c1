"""Test-wide settings: one intra-op thread (tiny models gain nothing from more, and threads
that compete with other processes slow small kernels down by orders of magnitude)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
