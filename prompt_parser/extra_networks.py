"""Extra-network tags such as `<lora:name:0.8>`: taken out of the prompt text, kept as data."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TAG = re.compile(r"<(\w+):([^>]+)>")


@dataclass(frozen=True)
class ExtraNetwork:
    """One tag: `<lora:name:0.8:te=0.5>` is kind "lora", items ("name", "0.8", "te=0.5").

    The attributes `items`, `positional` and `named` are those of A1111's
    ExtraNetworkParams, which extensions read.
    """

    kind: str
    items: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.items[0]

    @property
    def positional(self) -> list[str]:
        return [item for item in self.items if len(item.split("=", 2)) != 2]

    @property
    def named(self) -> dict[str, str]:
        return dict(parts for item in self.items if len(parts := item.split("=", 2)) == 2)


def extract_extra_networks(prompt: str) -> tuple[str, tuple[ExtraNetwork, ...]]:
    """The prompt without its tags, and the tags in the order they stand."""
    found: list[ExtraNetwork] = []

    def take(match: re.Match) -> str:
        found.append(ExtraNetwork(match.group(1), tuple(match.group(2).split(":"))))
        return ""

    return _TAG.sub(take, prompt), tuple(found)


def parse_extra_networks(prompt: str) -> tuple[str, dict[str, list[ExtraNetwork]]]:
    """A1111's `extra_networks.parse_prompt`: the text, and the tags grouped by kind."""
    text, networks = extract_extra_networks(prompt)
    by_kind: dict[str, list[ExtraNetwork]] = {}
    for network in networks:
        by_kind.setdefault(network.kind, []).append(network)
    return text, by_kind
