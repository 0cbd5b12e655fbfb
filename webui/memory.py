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
import re
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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

    def remove(self, restore: bool = True) -> None:
        """Hooks off and every unit back on the compute device (the model as loaded); `restore` False leaves
        the units where they are, for a placement that replaces this one (no moment with all on the GPU)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for name in self.units if restore else ():
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


FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
# Layers kept in the compute dtype, as diffusers' layerwise casting keeps them: norms, embeddings, the first and
# last projections (their precision shows most in the image).
KEEP_PATTERNS = ("pos_embed", "patch_embed", "norm", "^proj_in$", "^proj_out$")


class FP8Linear(nn.Linear):
    """A Linear stored in fp8 (see `store_fp8`): its weights are upcast for each call, nothing is written back
    (diffusers' layerwise casting casts the module to and fro instead), so torch.compile can trace it."""

    compute_dtype = torch.float32

    def forward(self, x):
        dtype = self.compute_dtype
        return F.linear(x.to(dtype), self.weight.to(dtype), None if self.bias is None else self.bias.to(dtype))


class _FP8Conv:
    compute_dtype = torch.float32

    def forward(self, x):
        dtype = self.compute_dtype
        bias = None if self.bias is None else self.bias.to(dtype)
        return self._conv_forward(x.to(dtype), self.weight.to(dtype), bias)


class FP8Conv1d(_FP8Conv, nn.Conv1d):
    pass


class FP8Conv2d(_FP8Conv, nn.Conv2d):
    pass


class FP8Conv3d(_FP8Conv, nn.Conv3d):
    pass


_FP8_LAYERS = {nn.Linear: FP8Linear, nn.Conv1d: FP8Conv1d, nn.Conv2d: FP8Conv2d, nn.Conv3d: FP8Conv3d}


def store_fp8(module: nn.Module, compute_dtype: torch.dtype, storage: torch.dtype = torch.float8_e4m3fn) -> None:
    """A1111's "FP8 weight": the weights of Linear/Conv layers stored as `storage` (float8_e4m3fn: half the
    memory of fp16), each layer's upcast to `compute_dtype` only while it computes. The rest (norms,
    embeddings, the layers a transformers model keeps in float32, such as T5's `wo`) stays as it is, but for
    what a checkpoint stored in fp8: that is upcast to `compute_dtype`."""
    keep = KEEP_PATTERNS + tuple(f"(^|\\.){name}$" for name in getattr(module, "_keep_in_fp32_modules", None) or ())
    for name, layer in module.named_modules():
        fp8_class = _FP8_LAYERS.get(type(layer))
        if fp8_class is not None and not any(re.search(pattern, name) for pattern in keep):
            layer.to(dtype=storage)
            layer.__class__, layer.compute_dtype = fp8_class, compute_dtype
        elif type(layer) not in _FP8_LAYERS.values():
            layer._apply(lambda t: t.to(compute_dtype) if t.dtype in FP8_DTYPES else t, recurse=False)


def uses_fp8(module: nn.Module) -> bool:
    return any(p.dtype in FP8_DTYPES for p in module.parameters())


def stored_fp8(weights: dict) -> torch.dtype | None:
    """The fp8 type a checkpoint part's weights are stored in (the most common one), or None."""
    found = Counter(t.dtype for t in weights.values() if t.dtype in FP8_DTYPES)
    return found.most_common(1)[0][0] if found else None


def cast_loaded(module: nn.Module, weights: dict, dtype: torch.dtype, keep_fp8: bool = False) -> nn.Module:
    """A network just filled with a checkpoint's `weights`, cast to `dtype`; with `keep_fp8`, one whose file
    stores its weights in fp8 keeps them so (as `store_fp8` stores them) rather than upcast to twice the memory."""
    storage = stored_fp8(weights) if keep_fp8 else None
    if storage is None:
        return nn.Module.to(module, dtype=dtype)  # not diffusers' override: it only adds checks and a warning
    module._apply(lambda t: t.to(dtype) if t.is_floating_point() and t.dtype not in FP8_DTYPES else t)
    store_fp8(module, dtype, storage)
    log.info("FP8 weight: the checkpoint stores the %s's weights in %s; they stay so", type(module).__name__,
             str(storage).removeprefix("torch."))
    return module


def fp8_label(model) -> str | None:
    """The infotext's "FP8 weight": the setting that stored the weights in fp8, or "Enable" for a checkpoint
    stored in fp8 (as if the setting were on: the weights are the same); None when they are not fp8."""
    if not uses_fp8(model.unet):
        return None
    options = model.memory_options
    return options.fp8 if options is not None and options.fp8_for(model.family.name) else "Enable"


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
