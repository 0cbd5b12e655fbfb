"""Where a model's parts sit while a job runs: A1111's --medvram / --medvram-sdxl / --lowvram, big text
encoders off the GPU once the prompt is encoded, and fp8 weight storage ("FP8 weight").

A model is cut into *units* (the text encoders, the UNet or transformer, the VAE; with --lowvram the
networks' blocks). A unit that is *swapped* lives on the offload device (CPU memory) and is moved onto the
compute device the moment one of its modules is called, sending the swapped unit that was there before back.
So with --medvram the text encoders, then the UNet, then the VAE take turns on the GPU; with --lowvram only
one block at a time is there. A *resident* unit stays on the compute device. Units move in forward
pre-hooks (registered on every module of a unit that holds weights, so a direct call such as
`encoder.get_input_embeddings()(ids)` moves its unit too), which is why every path through the model
(txt2img, img2img's VAE encode, the hires fix, scripts) is covered without the callers knowing.

`Placement.where` is the device map ("compute" or "offload" per unit), kept current for tests and logs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)

MODES = ("normal", "medvram", "lowvram")
FP8_CHOICES = ("Disable", "Enable for SDXL", "Enable")


@dataclass(frozen=True)
class MemoryOptions:
    """The memory flags and settings, as one value the loaders pass on."""

    mode: str = "normal"  # "normal", "medvram" or "lowvram"
    medvram_sdxl: bool = False  # --medvram-sdxl: medvram for SDXL models only
    fp8: str = "Disable"  # A1111's fp8_storage setting

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown memory mode {self.mode!r}; one of {', '.join(MODES)}")
        if self.fp8 not in FP8_CHOICES:
            raise ValueError(f"unknown FP8 weight choice {self.fp8!r}; one of {', '.join(FP8_CHOICES)}")

    @classmethod
    def from_flags(cls, flags, fp8: str = "Disable") -> "MemoryOptions":
        mode = "lowvram" if getattr(flags, "lowvram", False) else "medvram" if getattr(flags, "medvram", False) else "normal"
        return cls(mode, bool(getattr(flags, "medvram_sdxl", False)), fp8)

    def mode_for(self, family_name: str) -> str:
        if self.mode == "normal" and self.medvram_sdxl and family_name == "sdxl":
            return "medvram"
        return self.mode

    def fp8_for(self, family_name: str) -> bool:
        return self.fp8 == "Enable" or (self.fp8 == "Enable for SDXL" and family_name == "sdxl")


def _holds_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


def _has_weights(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _holds_a_stack(module: nn.Module) -> bool:
    return any(isinstance(m, nn.ModuleList) for m in module.modules())


def blocks(module: nn.Module, prefix: str, top: bool = True, in_list: bool = False) -> list[tuple[str, nn.Module]]:
    """`module` cut into the pieces --lowvram moves one at a time: the top level's children, each element of
    a layer stack (a UNet down/up block, a transformer or T5 layer), and containers without weights of their
    own opened down to their stacks (CLIPTextModel -> text_model -> encoder -> layers.N; T5's encoder ->
    block.N), so that no piece is a whole stack of layers (T5-XXL's 24 layers are about 9.5 GB in fp16)."""
    if (_holds_tensors(module) and top) or in_list:
        return [(prefix, module)]  # weights of its own at the top: it moves as a whole
    children = [(name, child) for name, child in module.named_children() if _has_weights(child)]
    stack = isinstance(module, (nn.ModuleList, nn.Sequential))
    open_up = top or stack or (not _holds_tensors(module) and (len(children) == 1 or _holds_a_stack(module)))
    if not open_up or not children:
        return [(prefix, module)]
    found = []
    for name, child in children:
        found += blocks(child, f"{prefix}.{name}", top=False, in_list=stack)
    return found


class Placement:
    """The units of one model and which of them is on the compute device (see the module doc)."""

    def __init__(self, compute: torch.device, offload: torch.device = torch.device("cpu")):
        self.compute, self.offload = torch.device(compute), torch.device(offload)
        self.units: dict[str, list[nn.Module]] = {}
        self.swapped: set[str] = set()
        self.where: dict[str, str] = {}  # unit -> "compute" | "offload": the device map
        self.active: str | None = None  # the swapped unit on the compute device now
        self.moves: list[tuple[str, str]] = []  # (unit, "compute"/"offload") in order, for tests and logs
        self.networks: tuple[int, ...] = ()  # ids of the whole networks placed (to notice one replaced)
        self._handles: list = []

    def add(self, name: str, modules: list[nn.Module], swapped: bool, inner_hooks: bool = True) -> None:
        """`inner_hooks`: hook each weight-holding submodule too, for callers that call one directly (not
        for the UNet, whose submodules only its forward calls: that keeps hooks out of a compiled graph)."""
        self.units[name] = modules
        if swapped:
            self.swapped.add(name)
            self._move(name, "offload")
            for module in modules:
                for sub in module.modules() if inner_hooks else [module]:
                    if sub is module or _holds_tensors(sub):
                        self._handles.append(sub.register_forward_pre_hook(self._hook(name), with_kwargs=True))
        else:
            self._move(name, "compute")

    def _hook(self, name: str):
        def before_forward(module, args, kwargs):
            if self.active != name:
                self.activate(name)
            # inputs made where the unit used to be (a caller that asked the weights for their device)
            if any(isinstance(a, torch.Tensor) and a.device != self.compute for a in args):
                args = tuple(a.to(self.compute) if isinstance(a, torch.Tensor) else a for a in args)
                return args, kwargs
            return None

        return before_forward

    def park_on_use(self, name: str) -> None:
        """When resident unit `name` runs, the swapped unit at work before it (the text encoders) leaves."""
        def park(module, args):
            if self.active is not None:
                self._move(self.active, "offload")
                self.active = None

        for module in self.units[name]:
            self._handles.append(module.register_forward_pre_hook(park))

    def activate(self, name: str) -> None:
        """Put swapped unit `name` on the compute device, sending the one there before to the offload device."""
        if self.active is not None and self.active != name:
            self._move(self.active, "offload")
        self._move(name, "compute")
        self.active = name

    def park(self) -> None:
        """The swapped unit on the compute device goes back to the offload device (A1111's send_everything_to_cpu)."""
        if self.active is not None:
            self._move(self.active, "offload")
            self.active = None

    def _move(self, name: str, role: str) -> None:
        device = self.compute if role == "compute" else self.offload
        for module in self.units[name]:
            module.to(device)
        self.where[name] = role
        self.moves.append((name, role))

    def remove(self) -> None:
        """Hooks off and every unit back on the compute device (the model as loaded)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for name in self.units:
            self._move(name, "compute")
        self.active = None


def network_parts(model) -> dict[str, list[nn.Module]]:
    """The model's networks by unit name: text encoders together, the UNet/transformer, the VAE."""
    return {"text_encoders": [e for e in model.text_encoders if isinstance(e, nn.Module)],
            "unet": [model.unet], "vae": [model.vae]}


def build_placement(model, mode: str, compute: torch.device, offload: torch.device) -> Placement:
    """The units of `model` for `mode`. In every mode a family with a T5/LLM text encoder keeps its text
    encoders off the GPU except while it encodes (T5-XXL alone is about 9.5 GB in fp16)."""
    placement = Placement(compute, offload)
    parts = network_parts(model)
    big_text = model.family.long_text_encoder(model) is not None
    placement.networks = tuple(id(m) for modules in parts.values() for m in modules)
    for name, modules in parts.items():
        if not modules:
            continue
        if mode == "lowvram" and name != "vae":
            for i, module in enumerate(modules):
                for block_name, block in blocks(module, f"{name}.{i}" if name == "text_encoders" else name):
                    placement.add(block_name, [block], swapped=True)
        else:
            swapped = mode in ("medvram", "lowvram") or (name == "text_encoders" and big_text)
            placement.add(name, modules, swapped=swapped, inner_hooks=name != "unet")
    if placement.swapped:
        for name in set(placement.units) - placement.swapped:
            placement.park_on_use(name)
    return placement


def store_fp8(module: nn.Module, compute_dtype: torch.dtype) -> None:
    """A1111's "FP8 weight": the weights of Linear/Conv layers stored as float8_e4m3fn (half the memory of
    fp16), each layer's upcast to `compute_dtype` only while it computes. Norms and embeddings stay as
    they are (diffusers' layerwise casting, whose defaults skip them)."""
    from diffusers.hooks import apply_layerwise_casting

    apply_layerwise_casting(module, storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)


def uses_fp8(module: nn.Module) -> bool:
    return any(p.dtype == torch.float8_e4m3fn for p in module.parameters())


def configure(model, options: MemoryOptions, compute: torch.device | None = None,
              offload: torch.device = torch.device("cpu")) -> Placement:
    """Apply `options` to a freshly loaded `model` (on any device): fp8 storage, then the placement.
    The model's `device` stays the compute device: inputs are made there, the weights follow."""
    compute = torch.device(compute or model.device)
    family = model.family.name
    if options.fp8_for(family) and not uses_fp8(model.unet):
        store_fp8(model.unet, model.dtype)
        log.info("FP8 weight: the %s's Linear/Conv weights are stored in float8_e4m3fn",
                 "transformer" if model.family.flow else "UNet")
    long_encoder = model.family.long_text_encoder(model)
    if long_encoder is not None and options.fp8_for(family):
        for encoder in model.text_encoders[1:]:
            if isinstance(encoder, nn.Module) and not uses_fp8(encoder):
                store_fp8(encoder, model.dtype)
    mode = options.mode_for(family)
    # Always a placement: in the normal mode it moves every part to the compute device (a model loaded into
    # CPU memory for --medvram-sdxl that turned out not to be SDXL) and hooks nothing but big text encoders.
    placement = build_placement(model, mode, compute, offload)
    if mode != "normal":
        log.info("%s: only the part of the model at work sits on %s", mode, compute)
    model.device = compute
    model.placement = placement
    model.memory_options = options
    return placement


def refresh(model) -> None:
    """Before a job: a part swapped since loading (a separate VAE chosen) joins the placement."""
    placement = getattr(model, "placement", None)
    options = getattr(model, "memory_options", None)
    if placement is None or options is None:
        return
    current = tuple(id(m) for modules in network_parts(model).values() for m in modules)
    if current != placement.networks:
        placement.remove()
        configure(model, options, placement.compute, placement.offload)
