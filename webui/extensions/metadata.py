"""metadata.ini: an extension's name, what it requires, and the load order of its scripts.

    [Extension]
    Name = my-extension
    Requires = other-ext, this-one | that-one       ("a | b": either will do)

    [scripts/main.py]        ([scripts] applies to every script of the extension)
    Requires = other-ext/helper.py
    After = other-ext
    Before = builtin/xyz/xyz_grid.py

Scripts are named `<extension>/<file.py>` (`builtin/<extension>/<file.py>` for built-in
ones); a bare extension name means all of its scripts. Names compare case-insensitively.
"""

from __future__ import annotations

import configparser
import heapq
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RULES = ("requires", "before", "after")


class Metadata:
    def __init__(self, path: Path | None = None):
        self.config = configparser.ConfigParser(interpolation=None)
        self.error: str | None = None
        if path is not None and path.is_file():
            try:
                self.config.read(path, encoding="utf-8")
            except (configparser.Error, UnicodeDecodeError) as error:
                self.error = f"metadata.ini: {error}"

    def get(self, section: str, key: str) -> str:
        return self.config.get(section, key, fallback="") if self.config.has_section(section) else ""

    @property
    def name(self) -> str:
        return self.get("Extension", "Name").strip()

    @property
    def requires(self) -> list[list[str]]:
        return parse_names(self.get("Extension", "Requires"))

    def script_rules(self, filename: str) -> dict[str, list[list[str]]]:
        """Requires/Before/After for one script: its own section plus the general [scripts]."""
        return {rule: parse_names(self.get("scripts", rule)) + parse_names(self.get(f"scripts/{filename}", rule))
                for rule in RULES}


def parse_names(text: str) -> list[list[str]]:
    """"a, b | c d" -> [["a"], ["b", "c"], ["d"]]: each group is satisfied by any of its names."""
    text = re.sub(r"\s*\|\s*", "|", text.strip())
    return [[name.lower() for name in token.split("|") if name] for token in re.split(r"[,\s]+", text) if token]


@dataclass
class ScriptFile:
    extension: Any  # loader.Extension
    path: Path

    def names(self) -> set[str]:
        """Every name metadata.ini may use for this script (or for its whole extension)."""
        ext = self.extension.canonical_name
        own = {f"{ext}/{self.path.name}", f"{ext}/scripts/{self.path.name}", ext}
        if self.extension.builtin:
            own |= {f"builtin/{name}" for name in own}
        if self.extension.metadata.name:
            own.add(self.extension.metadata.name.lower())
        return own


def order_scripts(files: list[ScriptFile]) -> list[ScriptFile]:
    """Discovery order, changed only as far as the Before/After/Requires rules demand.

    A rule naming nothing loaded is reported on the extension (Requires) or ignored (Before,
    After); a cycle is reported and the files in it keep discovery order."""
    names = [file.names() for file in files]
    after: list[set[int]] = [set() for _ in files]  # after[i]: files that must load before file i

    def matching(group: list[str], me: int) -> list[int]:
        return [j for j, own in enumerate(names) if j != me and own.intersection(group)]

    for i, file in enumerate(files):
        rules = file.extension.metadata.script_rules(file.path.name)
        for group in rules["requires"]:
            found = matching(group, i)
            if not found:
                file.extension.warnings.append(f"{file.path.name} requires {' or '.join(group)}, which is not loaded")
            after[i].update(found)
        for group in rules["after"]:
            after[i].update(matching(group, i))
        for group in rules["before"]:
            for j in matching(group, i):
                after[j].add(i)

    waiting = [len(deps) for deps in after]
    dependents: list[list[int]] = [[] for _ in files]
    for i, deps in enumerate(after):
        for j in deps:
            dependents[j].append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for k in dependents[i]:
            waiting[k] -= 1
            if waiting[k] == 0:
                heapq.heappush(ready, k)
    if len(order) < len(files):
        stuck = [i for i in range(len(files)) if i not in set(order)]
        for i in stuck:
            files[i].extension.warnings.append(f"{files[i].path.name}: load order rules form a cycle; ignored")
        log.warning("script load order rules form a cycle: %s", ", ".join(str(files[i].path) for i in stuck))
        order += stuck
    return [files[i] for i in order]
