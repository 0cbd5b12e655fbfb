"""Extra networks that extensions register (A1111's `modules.extra_networks` registry): an object with a
`name` ("hypernet", "lyco", ...) whose `activate(p, params_list)` runs for each batch with the `<name:...>`
tags of the batch's prompt, and `deactivate(p)` once the job's batches are done.

As in A1111, every registered network is activated each batch, with an empty list when the prompt has no
tag of its kind, so it can undo what an earlier batch set. LoRA is ours (webui/networks); a tag no network
claims is skipped with a warning. An exception inside an extension's network is logged and the job goes on.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

NATIVE_KINDS = ("lora",)  # applied by our own engine (webui/networks)


class ExtraNetworkRegistry:
    """The registered extra networks of one SharedState, by name (and by alias)."""

    def __init__(self):
        self.networks: dict = {}
        self.aliases: dict = {}
        self.builtin: dict = {}  # ours that work the same way (hypernet): kept when extensions load again
        self.pages: list = []  # extensions' tabs of cards (modules.ui_extra_networks.register_page)

    def register(self, network, alias: str | None = None, builtin: bool = False) -> None:
        self.networks[network.name] = network
        if alias:
            self.aliases[alias] = network
        if builtin:
            self.builtin[network.name] = network

    def clear(self) -> None:
        self.networks.clear()
        self.aliases.clear()
        self.pages.clear()
        self.networks.update(self.builtin)

    def lookup(self, name: str):
        return self.networks.get(name) or self.aliases.get(name)

    def activate(self, p, data: dict) -> None:
        done = set()
        for name, params in data.items():
            network = self.lookup(name)
            if network is None:
                if name not in NATIVE_KINDS:
                    log.warning("skipping unknown extra network: %s", name)
                continue
            _call(network, "activate", p, params)
            done.add(id(network))
        for network in self.networks.values():
            if id(network) not in done:
                _call(network, "activate", p, [])

    def deactivate(self, p, data: dict) -> None:
        for network in {id(n): n for n in self.networks.values()}.values():
            _call(network, "deactivate", p)


def _call(network, method: str, *args) -> None:
    try:
        getattr(network, method)(*args)
    except Exception:  # an extension's network failing costs its own effect, not the job
        log.exception("extra network %s: %s failed", getattr(network, "name", network), method)
