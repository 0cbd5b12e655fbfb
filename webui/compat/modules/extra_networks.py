"""A1111's `modules.extra_networks`: the ExtraNetwork base class, the registry (webui/extensions/extra_networks.py,
one per SharedState) and the prompt-tag parsing extensions call."""

from __future__ import annotations

from prompt_parser import parse_extra_networks
from webui import compat
from webui.extensions.hooks import ExtraNetworkParams  # noqa: F401  (A1111's name for a parsed tag)


class ExtraNetwork:
    """Subclass it, set `name`, implement activate(p, params_list) and deactivate(p)."""

    def __init__(self, name: str):
        self.name = name

    def activate(self, p, params_list):
        raise NotImplementedError

    def deactivate(self, p):
        raise NotImplementedError


def register_extra_network(extra_network) -> None:
    compat.state().extra_networks.register(extra_network)


def register_extra_network_alias(extra_network, alias: str) -> None:
    compat.state().extra_networks.register(extra_network, alias)


def parse_prompt(prompt: str) -> tuple[str, dict]:
    """The prompt without its `<name:...>` tags, and {name: [ExtraNetworkParams]}."""
    text, by_kind = parse_extra_networks(prompt)
    return text, {kind: [ExtraNetworkParams(tag.items) for tag in tags] for kind, tags in by_kind.items()}


def parse_prompts(prompts: list[str]) -> tuple[list[str], dict]:
    """Every prompt without its tags, and the first prompt's tags (A1111 reads a batch's from its first)."""
    texts, data = [], None
    for prompt in prompts:
        text, found = parse_prompt(prompt)
        texts.append(text)
        data = found if data is None else data
    return texts, data or {}


def activate(p, extra_network_data: dict) -> None:
    compat.state().extra_networks.activate(p, extra_network_data)


def deactivate(p, extra_network_data: dict) -> None:
    compat.state().extra_networks.deactivate(p, extra_network_data)


def lookup_extra_networks(extra_network_data: dict) -> dict:
    registry = compat.state().extra_networks
    return {registry.lookup(name): params for name, params in extra_network_data.items() if registry.lookup(name)}


def __getattr__(name: str):
    if name == "extra_network_registry":
        return compat.state().extra_networks.networks
    if name == "extra_network_aliases":
        return compat.state().extra_networks.aliases
    raise compat.missing(__name__, name)
