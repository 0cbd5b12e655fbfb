"""The speed and memory flags (--compile, --medvram, --medvram-sdxl, --lowvram, the attention flags), shared by
launch.py and `python -m webui.cli`, and what they do to a loaded model.

Each flag works or is refused with a reason: memory modes are webui/memory.py, the compiled path
webui/fast_path.py. Attention is PyTorch's scaled_dot_product_attention everywhere (diffusers' default
processor), which holds the flash and memory-efficient kernels xformers brought to A1111, so the attention
flags map onto it (--opt-sdp-no-mem-attention turns the memory-efficient kernel off, as in A1111).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field

import torch

from . import fast_path, memory

log = logging.getLogger(__name__)

ATTENTION_FLAGS = {
    "xformers": "xformers' kernels are in PyTorch's SDPA (flash / memory-efficient), which attention uses",
    "opt_sdp_attention": "attention uses PyTorch's SDPA",
    "opt_sdp_no_mem_attention": "attention uses PyTorch's SDPA without its memory-efficient kernel",
    "opt_split_attention": "attention uses PyTorch's SDPA, whose memory-efficient kernel splits the work itself",
}


def add_speed_flags(parser) -> None:
    """The flags on `parser` (an ArgumentParser or one of its groups)."""
    add = parser.add_argument
    add("--compile", action="store_true",
        help="torch.compile the UNet/transformer (CUDA graphs on a GPU); the first run of each size compiles")
    add("--medvram", action="store_true",
        help="keep only the part at work on the GPU: text encoders, UNet and VAE take turns")
    add("--medvram-sdxl", action="store_true", help="--medvram for SDXL models only")
    add("--lowvram", action="store_true", help="keep one block of a network at a time on the GPU (slow)")
    add("--fp8-storage", choices=memory.FP8_CHOICES, default=None,
        help="A1111's FP8 weight setting: store Linear/Conv weights in float8_e4m3fn (default: the setting)")
    for name in ATTENTION_FLAGS:
        add(f"--{name.replace('_', '-')}", action="store_true", help=ATTENTION_FLAGS[name])


def refusals(flags: argparse.Namespace) -> list[str]:
    """Why these flags cannot be used together (empty: they can)."""
    problems = []
    if getattr(flags, "compile", False) and getattr(flags, "lowvram", False):
        problems.append("--compile cannot be used with --lowvram: --lowvram moves blocks in and out of the GPU "
                        "inside every step, and a compiled step needs its weights in place; use --medvram")
    return problems


@dataclass(frozen=True)
class RuntimeOptions:
    memory: memory.MemoryOptions = field(default_factory=memory.MemoryOptions)
    compile: bool = False

    @classmethod
    def from_flags(cls, flags: argparse.Namespace, fp8_setting: str = "Disable",
                   compile_setting: bool = False) -> "RuntimeOptions":
        fp8 = getattr(flags, "fp8_storage", None) or fp8_setting
        return cls(memory.MemoryOptions.from_flags(flags, fp8), bool(getattr(flags, "compile", False) or compile_setting))

    @property
    def loads_on_cpu(self) -> bool:
        """Whether checkpoints load into CPU memory first (the modes that may not fit the whole model)."""
        return self.memory.mode != "normal" or self.memory.medvram_sdxl


def apply_attention_flags(flags: argparse.Namespace) -> None:
    for name, what in ATTENTION_FLAGS.items():
        if getattr(flags, name, False):
            log.info("--%s: %s", name.replace("_", "-"), what)
    if getattr(flags, "opt_sdp_no_mem_attention", False) and torch.cuda.is_available():
        torch.backends.cuda.enable_mem_efficient_sdp(False)


def prepare(model, options: RuntimeOptions, compute: torch.device | str | None = None):
    """Apply the memory mode, fp8 storage and --compile to a loaded model; again when `options` changed since
    (a setting changed: FP8 weight or compile_unet), so that the next job runs as the settings say. Turning
    FP8 weight off needs the file's weights again: see `needs_reload`."""
    if model.runtime_options == options:
        return model
    fast_path.disable(model)  # what other options did before, undone (fp8 weights stay fp8)
    if model.placement is not None:
        compute = compute or model.placement.compute
        model.placement.remove(restore=False)  # the new placement puts each part where it belongs
    compute = torch.device(compute or model.device)
    memory.configure(model, options.memory, compute)
    if compute.type == "cpu" and options.memory.mode != "normal":
        log.info("--%s: there is no GPU, so everything is in CPU memory anyway", options.memory.mode)
    if options.compile:
        if options.memory.mode_for(model.family.name) == "lowvram":  # the setting with --lowvram
            log.warning("--compile is off: --lowvram moves blocks in and out of the GPU inside every step")
        else:  # fp8 weights too: their per-layer upcast (memory.FP8Linear) is traced into the graph
            fast_path.enable(model)
    model.runtime_options = options
    return model


def needs_reload(model, options: RuntimeOptions) -> bool:
    """Whether `model` must be loaded again for `options`: FP8 weight was on for it and is off now (the
    full-precision weights are only in the file)."""
    applied, family = model.runtime_options, model.family.name
    return applied is not None and applied.memory.fp8_for(family) and not options.memory.fp8_for(family)
