"""Hypernetworks in a job: the built-in `hypernet` extra network (`<hypernet:name:weight>` and the
`sd_hypernetwork` setting), registered in the state's ExtraNetworkRegistry as A1111 registers its own.

Each batch, `activate` puts forward pre-hooks on the `to_k` / `to_v` projections of the UNet's attention
layers whose input width has a layer in one of the batch's hypernetworks; `deactivate` (after the job's
batches) removes them, so the model is as it was. See hypernetworks.py for the file format.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import torch

from .hypernetworks import Hypernetwork, HypernetworkError, HypernetworkLibrary, hypernetwork_dir

log = logging.getLogger(__name__)


def _attention_projections(unet: torch.nn.Module) -> Iterator[tuple[torch.nn.Linear, torch.nn.Linear]]:
    """(to_k, to_v) of every attention layer of the UNet (self- and cross-attention, as in A1111)."""
    for module in unet.modules():
        to_k, to_v = getattr(module, "to_k", None), getattr(module, "to_v", None)
        if isinstance(to_k, torch.nn.Linear) and isinstance(to_v, torch.nn.Linear):
            yield to_k, to_v


def _pre_hook(mlps: list[tuple[torch.nn.Module, float]]):
    """x -> x + mlp(x) * weight, for each (mlp, weight) in turn; computed in float32 as A1111 does."""
    def hook(module, args):
        x = args[0]
        out = x.float()
        for mlp, weight in mlps:
            out = out + mlp(out) * weight
        return (out.to(x.dtype), *args[1:])
    return hook


def install_hypernetworks(unet: torch.nn.Module, networks: list[tuple[Hypernetwork, float]]) -> list:
    """Hooks for these (hypernetwork, weight) pairs on `unet`; returns the handles (`.remove()` undoes them)."""
    handles = []
    if not networks:
        return handles
    parameter = next(unet.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    for to_k, to_v in _attention_projections(unet):
        width = to_k.in_features
        keys, values = [], []
        for network, weight in networks:
            pair = network.layers.get(width)
            if pair is not None:
                keys.append((pair[0].to(device, torch.float32), weight))
                values.append((pair[1].to(device, torch.float32), weight))
        if keys:
            handles.append(to_k.register_forward_pre_hook(_pre_hook(keys)))
            handles.append(to_v.register_forward_pre_hook(_pre_hook(values)))
    return handles


@contextmanager
def hypernetworks_applied(unet: torch.nn.Module, networks: list[tuple[Hypernetwork, float]]):
    """The hypernetworks active on `unet` inside the block only."""
    handles = install_hypernetworks(unet, networks)
    try:
        yield len(handles) // 2
    finally:
        for handle in handles:
            handle.remove()


class HypernetExtraNetwork:
    """A1111's `hypernet` extra network, with A1111's `activate(p, params_list)` / `deactivate(p)`."""

    name = "hypernet"

    def __init__(self, state):
        self.state = state
        self.library = HypernetworkLibrary(hypernetwork_dir(state.flags))
        self._handles: list = []

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _wanted(self, p, params_list) -> list[tuple[str, float]]:
        wanted = []
        for params in params_list:
            items = list(getattr(params, "items", params))
            name = items[0]
            try:
                weight = float(items[1]) if len(items) > 1 else 1.0
            except ValueError:
                raise HypernetworkError(f"bad weight in <hypernet:{':'.join(items)}>") from None
            wanted.append((name, weight))
        # The stored setting, the job's override_settings (its context), then a script's own on p.
        job_overrides = getattr(getattr(p, "_context", None), "overrides", None) or {}
        settings = {**self.state.options.as_dict(), **job_overrides, **(getattr(p, "override_settings", None) or {})}
        chosen = settings.get("sd_hypernetwork") or "None"
        if chosen != "None" and all(name != chosen for name, _ in wanted):
            # A1111 adds the chosen one to the prompt, at the default extra-network weight.
            weight = float(settings.get("extra_networks_default_multiplier", 1.0))
            wanted.append((chosen, weight))
            tag = f"<hypernet:{chosen}:{weight:g}>"
            if isinstance(getattr(p, "prompts", None), list):
                p.prompts = [f"{prompt}{tag}" for prompt in p.prompts]
        return wanted

    def activate(self, p, params_list) -> None:
        self._remove()
        wanted = self._wanted(p, params_list)
        if not wanted:
            return
        loaded = []
        for name, weight in wanted:
            file = self.library.find(name)
            if file is None:
                _warn(p, f"Hypernetwork {name} not found in {self.library.directory.name}/ (models/hypernetworks)")
                continue
            try:
                loaded.append((self.library.load(file), weight))
            except (HypernetworkError, OSError) as error:
                _warn(p, f"Hypernetwork {name}: {error}")
        model = getattr(p, "sd_model", None)
        unet = getattr(model, "unet", None)
        if unet is None or not loaded:
            return
        self._handles = install_hypernetworks(unet, loaded)
        if not self._handles:
            _warn(p, f"Hypernetwork {', '.join(n.name for n, _ in loaded)}: no layer fits this model's attention widths")

    def deactivate(self, p) -> None:
        self._remove()


def hypernetwork_library(state) -> HypernetworkLibrary:
    """The hypernetwork files of this state (those its `hypernet` extra network uses)."""
    network = state.extra_networks.builtin.get(HypernetExtraNetwork.name)
    if network is None:  # a state made without the built-in (tests building SharedState by hand)
        network = HypernetExtraNetwork(state)
        state.extra_networks.register(network, builtin=True)
    return network.library


def _warn(p, message: str) -> None:
    log.warning("%s", message)
    warnings = getattr(p, "warnings", None)
    if isinstance(warnings, list):
        warnings.append(message)
