"""A1111's `modules.sd_hijack_optimizations`: the cross-attention optimisation base class extensions subclass
(to register one through script_callbacks.on_list_optimizers) and the VRAM helper they call. Attention here is
always PyTorch's SDPA (the --xformers / --opt-* flags choose its kernels, webui/runtime.py); an extension's
optimisation is listed by the callback but this WebUI does not swap the attention for it."""

from __future__ import annotations

import os

import torch

from webui import compat


class SdOptimization:
    name: str = None
    label: str | None = None
    cmd_opt: str | None = None
    priority: int = 0

    def title(self) -> str:
        return self.name if self.label is None else f"{self.name} - {self.label}"

    def is_available(self) -> bool:
        return True

    def apply(self) -> None:
        pass

    def undo(self) -> None:
        pass


class SdOptimizationSdp(SdOptimization):
    """The one in use: torch.nn.functional.scaled_dot_product_attention."""

    name = "sdp"
    label = "scaled dot product"
    cmd_opt = "opt_sdp_attention"
    priority = 80

    def is_available(self) -> bool:
        return hasattr(torch.nn.functional, "scaled_dot_product_attention")


def get_available_vram() -> int:
    """Free bytes on the GPU (what CUDA can still hand out plus torch's cached blocks), else free CPU memory."""
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        stats = torch.cuda.memory_stats()
        return free + stats.get("reserved_bytes.all.current", 0) - stats.get("active_bytes.all.current", 0)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError) as error:  # no sysconf (Windows)
        raise RuntimeError("get_available_vram: no GPU, and free memory cannot be read here") from error


__getattr__ = compat.report_missing_names(__name__)
