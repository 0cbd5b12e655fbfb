"""Brownian-tree noise for the SDE samplers, seeded per image as A1111 does.

A1111 gives DPM++ SDE / 2M SDE / 3M SDE one torchsde Brownian tree per image, seeded with that
image's seed, over [smallest non-zero sigma, largest sigma]. Noise for a step from sigma to
sigma_next is the tree's increment W(sigma_next) - W(sigma) scaled to unit variance; because
the tree is fixed by the seed, the same seed gives the same image at any batch size and any
step count refines the same Brownian path. Requires torchsde (imported on first use).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

# torchsde compares the float32 query times with its float64 interval ends and warns when the
# smallest and largest sigma land an ulp outside; the increments are still right.
warnings.filterwarnings("ignore", message=r"Should have (ta|tb)", category=UserWarning, module=r"torchsde\.")


class BrownianTreeNoiseSampler:
    """noise_sampler(sigma, sigma_next) backed by one Brownian tree per image seed.

    `seeds` is a list with one seed per image in x's batch (or a single int for one tree shared
    by the whole batch). The trees live on `device` (default: x's device, as in A1111 with its
    default GPU noise source); pass "cpu" to mirror A1111's CPU noise source.
    """

    def __init__(self, x: torch.Tensor, sigma_min, sigma_max, seeds: Sequence[int] | int, *, device=None):
        try:
            import torchsde
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("Brownian-tree noise needs torchsde (pip install torchsde)") from error
        device = x.device if device is None else torch.device(device)
        self.out_device = x.device
        t0 = torch.as_tensor(sigma_min).to(device)
        t1 = torch.as_tensor(sigma_max).to(device)
        self.flip = 1 if t0 < t1 else -1
        t0, t1 = (t0, t1) if self.flip == 1 else (t1, t0)
        w0 = torch.zeros_like(x, device=device)
        if isinstance(seeds, int):
            self.batched = False
            seeds = [seeds]
        else:
            seeds = [int(s) for s in seeds]
            if len(seeds) != x.shape[0]:
                raise ValueError(f"need one seed per image: got {len(seeds)} seeds for a batch of {x.shape[0]}")
            self.batched = True
            w0 = w0[0]
        self.trees = [torchsde.BrownianTree(t0, w0, t1, entropy=seed) for seed in seeds]

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        sign = self.flip * (1 if t0 < t1 else -1)
        lo, hi = (t0, t1) if t0 < t1 else (t1, t0)
        increments = torch.stack([tree(lo, hi) for tree in self.trees]) * sign
        if not self.batched:
            increments = increments[0]
        return increments.to(self.out_device) / (t1 - t0).abs().sqrt().to(self.out_device)
