"""A1111's `modules.lowvram` over our memory modes (webui/memory.py): --lowvram/--medvram cut the model into
units that take turns on the GPU. Extensions ask whether that is on, and send everything to the CPU before
putting a model of their own on the GPU."""

from __future__ import annotations

from webui import compat
from webui.memory import MemoryOptions, configure


def _model(sd_model=None):
    if sd_model is not None:
        return sd_model
    slot = getattr(compat.state().models, "slot", None)
    return slot.model if slot is not None else None


def is_needed(sd_model=None) -> bool:
    """Whether the flags ask for a memory mode for this model (--lowvram, --medvram, --medvram-sdxl on SDXL)."""
    options = MemoryOptions.from_flags(compat.state().flags)
    family = getattr(getattr(_model(sd_model), "family", None), "name", "")
    return options.mode_for(family) != "normal"


def is_enabled(sd_model=None) -> bool:
    """A1111's `sd_model.lowvram`: the model's parts take turns on the GPU (--lowvram or --medvram is in
    effect for it). Without a loaded model, what the flags ask for."""
    model = _model(sd_model)
    options = getattr(model, "memory_options", None)
    if options is None or getattr(model, "placement", None) is None:
        return is_needed(model)
    return options.mode_for(model.family.name) != "normal"


def send_everything_to_cpu() -> None:
    """The swapped unit now on the GPU goes back to CPU memory (resident units stay, as in A1111)."""
    model = _model()
    placement = getattr(model, "placement", None)
    if placement is not None:
        placement.park()


def setup_for_low_vram(sd_model, use_medvram: bool) -> None:
    """Put `sd_model` in the --medvram (use_medvram) or --lowvram placement, replacing the one it has."""
    placement = getattr(sd_model, "placement", None)
    if placement is None or not hasattr(sd_model, "family"):
        raise TypeError("setup_for_low_vram: expected a model loaded by this WebUI (shared.sd_model)")
    old = getattr(sd_model, "memory_options", None) or MemoryOptions()
    placement.remove()
    configure(sd_model, MemoryOptions("medvram" if use_medvram else "lowvram", old.medvram_sdxl, old.fp8),
              placement.compute, placement.offload)


__getattr__ = compat.report_missing_names(__name__)
