"""Putting LoRAs into a model's weights for one job, and taking them out again exactly.

`activated_loras(model, tags, library)` adds every tagged LoRA's update to the weights of
the Linear and Conv2d layers it names (several LoRAs add up), and on leaving puts back a
copy of each touched weight taken before the first change, so the model is bit-identical
afterwards. Problems (an unknown name, a file for another model family, LoHa/LoKr keys)
become warnings: the job runs on without that LoRA.

Module names are matched after writing dots as underscores, which is how Kohya names are
made. UNet names may also use the LDM/SGM layout (`input_blocks_4_1_...`, as in Kohya's
SDXL LoRAs); those are translated from the UNet's block structure.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from .lora import LoraError, LoraLibrary

log = logging.getLogger(__name__)

_WEIGHTED = (torch.nn.Linear, torch.nn.Conv2d)


@dataclass
class ActivatedNetworks:
    """What a job's LoRAs did: infotext keys to record, and warnings to show."""

    infotext: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # names as written in the prompt

    def warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)


def lora_multipliers(items: tuple[str, ...] | list[str]) -> tuple[float, float]:
    """(text encoder, UNet) weights of `<lora:name:te:unet>`, with `te=`/`unet=` as in A1111."""
    positional = [item for item in items if len(item.split("=", 2)) != 2]
    named = dict(parts for item in items if len(parts := item.split("=", 2)) == 2)
    te = float(positional[1]) if len(positional) > 1 else 1.0
    te = float(named.get("te", te))
    unet = float(positional[2]) if len(positional) > 2 else te
    unet = float(named.get("unet", unet))
    return te, unet


def lora_tags(networks: Iterable) -> list:
    """The `lora` tags among extra-network tags (prompt_parser.ExtraNetwork)."""
    return [n for n in networks if getattr(n, "kind", None) == "lora" and n.items and n.items[0]]


def prompt_networks(*prompts: str) -> list:
    """The extra-network tags written in the given prompts, in order (empty prompts skipped)."""
    from prompt_parser import extract_extra_networks

    found = []
    for prompt in prompts:
        if prompt and "<" in prompt:
            found.extend(extract_extra_networks(prompt)[1])
    return found


# -- module lookup ------------------------------------------------------------------------------

_lookups: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


def module_lookup(root: torch.nn.Module, unet: bool) -> dict[str, torch.nn.Module]:
    """Normalised module name -> Linear/Conv2d of a UNet or text encoder (built once per module)."""
    cached = _lookups.get(root)
    if cached is not None:
        return cached
    lookup: dict[str, torch.nn.Module] = {}
    layers = _layers_per_block(root) if unet else None
    for name, module in root.named_modules():
        if not isinstance(module, _WEIGHTED):
            continue
        key = name.replace(".", "_")
        if not unet and key.startswith("text_model_"):
            key = key[len("text_model_"):]
        lookup[key] = module
        if unet and layers is not None:
            ldm = ldm_unet_name(name, layers, _attention_blocks(root))
            if ldm:
                lookup.setdefault(ldm.replace(".", "_"), module)
    _lookups[root] = lookup
    return lookup


def _layers_per_block(unet) -> int | None:
    value = getattr(getattr(unet, "config", None), "layers_per_block", None)
    if isinstance(value, (list, tuple)):
        return value[0] if len(set(value)) == 1 else None
    return value


def _attention_blocks(unet) -> set[int]:
    """Indices of the up blocks that have attentions (their upsampler moves to slot 2)."""
    return {i for i, block in enumerate(getattr(unet, "up_blocks", [])) if getattr(block, "attentions", None)}


_RESNET_PARTS = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
                 "conv_shortcut": "skip_connection", "norm1": "in_layers.0", "norm2": "out_layers.0"}
_TOP_LEVEL = {"conv_in": "input_blocks.0.0", "conv_out": "out.2", "time_embedding.linear_1": "time_embed.0",
              "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
              "add_embedding.linear_2": "label_emb.0.2"}


def ldm_unet_name(name: str, layers: int, up_attention_blocks: set[int]) -> str | None:
    """The LDM/SGM name of a diffusers UNet module (`down_blocks.1.attentions.0.proj_in` ->
    `input_blocks.4.1.proj_in` with 2 layers per block), or None when it has none."""
    if name in _TOP_LEVEL:
        return _TOP_LEVEL[name]
    bits = name.split(".")
    per = layers + 1

    def resnet(rest: list[str]) -> str | None:
        tail = ".".join(rest)
        return _RESNET_PARTS.get(tail)

    if bits[0] == "down_blocks" and len(bits) >= 4:
        i, kind, j, rest = int(bits[1]), bits[2], int(bits[3]), bits[4:]
        if kind == "resnets" and (tail := resnet(rest)):
            return f"input_blocks.{1 + i * per + j}.0.{tail}"
        if kind == "attentions":
            return ".".join([f"input_blocks.{1 + i * per + j}.1", *rest])
        if kind == "downsamplers" and rest == ["conv"]:
            return f"input_blocks.{(i + 1) * per}.0.op"
    elif bits[0] == "mid_block" and len(bits) >= 3:
        kind, j, rest = bits[1], int(bits[2]), bits[3:]
        if kind == "resnets" and (tail := resnet(rest)):
            return f"middle_block.{2 * j}.{tail}"
        if kind == "attentions":
            return ".".join(["middle_block.1", *rest])
    elif bits[0] == "up_blocks" and len(bits) >= 4:
        i, kind, j, rest = int(bits[1]), bits[2], int(bits[3]), bits[4:]
        if kind == "resnets" and (tail := resnet(rest)):
            return f"output_blocks.{i * per + j}.0.{tail}"
        if kind == "attentions":
            return ".".join([f"output_blocks.{i * per + j}.1", *rest])
        if kind == "upsamplers" and rest == ["conv"]:
            return f"output_blocks.{i * per + layers}.{2 if i in up_attention_blocks else 1}.conv"
    return None


def _target_root(model, part):
    if part == "unet":
        return model.unet
    if isinstance(part, int) and part < len(model.text_encoders):
        return model.text_encoders[part]
    return None


# -- activation ---------------------------------------------------------------------------------

@contextmanager
def activated_loras(model, networks: Iterable, library: LoraLibrary | None) -> Iterator[ActivatedNetworks]:
    """LoRAs of the `lora` tags in `networks` active inside the block, removed exactly after."""
    active = ActivatedNetworks()
    backups: dict[torch.nn.Module, torch.Tensor] = {}
    try:
        tags = lora_tags(networks)
        if tags and library is None:
            active.warn("LoRA tags ignored: no LoRA folder is configured")
        elif tags:
            _activate(model, tags, library, active, backups)
        yield active
    finally:
        with torch.no_grad():
            for module, original in backups.items():
                module.weight.copy_(original)


def _activate(model, tags, library: LoraLibrary, active: ActivatedNetworks, backups: dict) -> None:
    deltas: dict[torch.nn.Module, torch.Tensor] = {}
    hashes: list[str] = []
    for tag in tags:
        name = tag.items[0]
        try:
            te_weight, unet_weight = lora_multipliers(tag.items)
        except ValueError:
            active.warn(f"Lora {name}: bad weight in <lora:{':'.join(tag.items)}>, left out")
            continue
        file = library.find(name)
        if file is None:
            active.warn(f"Couldn't find Lora with name {name}")
            continue
        try:
            network = library.load(file)
        except (LoraError, OSError) as error:
            active.warn(f"Lora {name}: {error}")
            continue
        for problem in network.unsupported:
            active.warn(f"Lora {name}: {problem}")
        matched, misfit = _collect(model, network, te_weight, unet_weight, deltas)
        if not network.layers:
            active.warn(f"Lora {name}: no LoRA layers it can use; left out")
            continue
        if matched == 0:
            active.warn(f"Lora {name}: none of its {len(network.layers)} layers fit this {model.family.label} model "
                        f"(made for another model family?); left out")
            continue
        if misfit:
            active.warn(f"Lora {name}: {misfit} of its {len(network.layers)} layers do not fit this model; "
                        f"used the other {matched}")
        active.applied.append(name)
        try:
            hashes.append(f"{_infotext_name(name)}: {file.shorthash}")
        except OSError:
            pass
    with torch.no_grad():
        for module, delta in deltas.items():
            weight = module.weight
            if module not in backups:
                backups[module] = weight.detach().to("cpu", copy=True)
            weight.copy_((weight.to(torch.float32) + delta).to(weight.dtype))
    if hashes:
        # Unquoted here: the infotext writer quotes values with commas or colons, as A1111's does.
        active.infotext["Lora hashes"] = ", ".join(hashes)


def _collect(model, network, te_weight: float, unet_weight: float, deltas: dict) -> tuple[int, int]:
    """Add this network's updates to `deltas`; (layers matched, layers that matched a name but not a shape)."""
    matched = misfit = 0
    pending = []
    for (part, key), layer in network.layers.items():
        root = _target_root(model, part)
        if root is None:
            continue
        module = module_lookup(root, unet=part == "unet").get(key)
        if module is None and part == "unet":  # a family's own names, e.g. Flux's original (BFL) ones
            module = _family_aliases(model, root).get(key)
        if module is None:
            continue
        # A fused original layer (Flux's qkv) stands for several modules: its update is split by their rows.
        targets = module if isinstance(module, tuple) else (module,)
        rows = [target.weight.shape[0] for target in targets]
        shape = torch.Size([sum(rows), *targets[0].weight.shape[1:]])
        try:
            delta = layer.delta(shape, targets[0].weight.device)
        except (ValueError, RuntimeError):
            misfit += 1
            continue
        matched += 1
        multiplier = unet_weight if part == "unet" else te_weight
        if multiplier != 0:
            pending += [(target, part_delta * multiplier) for target, part_delta in zip(targets, delta.split(rows))]
    if matched:  # a network that fits nowhere changes nothing
        for module, delta in pending:
            deltas[module] = deltas[module] + delta if module in deltas else delta
    return matched, misfit


_aliases: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


def _family_aliases(model, root) -> dict:
    """The model family's other names for the network's modules (built once per network)."""
    if root not in _aliases:
        _aliases[root] = model.family.lora_aliases(root)
    return _aliases[root]


def _infotext_name(name: str) -> str:
    """A name as it can stand in the quoted, comma-separated "Lora hashes" value."""
    return name.replace(":", "").replace(",", "").replace('"', "")
