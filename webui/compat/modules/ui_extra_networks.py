"""A1111's `modules.ui_extra_networks`: an extension adds a tab of cards to the Extra networks panel by
subclassing ExtraNetworksPage (list_items() yields A1111's item dicts) and calling register_page(page), usually
from an on_before_ui callback. Each item becomes a card; a click adds its "prompt" to the prompt
(webui/ui/extra_networks.py, page_cards). Pages are kept per SharedState, beside the extra networks."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from webui import compat

PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")


def quote_js(text) -> str:
    """A JavaScript string literal for `text` (A1111 builds an item's "prompt" as JS code from these)."""
    return json.dumps(str(text), ensure_ascii=False)


_JS_PART = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(\'(?:[^\'\\]|\\.)*\')|opts\.(\w+))\s*(\+|$)')


def prompt_text(expression: str, options: dict) -> str:
    """The text an item's JS "prompt" expression gives: string literals and `opts.<name>` joined by `+`, as
    A1111 writes them (quote_js("<lora:x:") + " + opts.extra_networks_default_multiplier + " + quote_js(">")).
    Anything else is taken as plain text."""
    parts, position = [], 0
    while position < len(expression):
        match = _JS_PART.match(expression, position)
        if match is None or match.end() == position:
            return expression
        double, single, option = match.group(1), match.group(2), match.group(3)
        if double is not None:
            parts.append(json.loads(double))
        elif single is not None:
            parts.append(json.loads('"' + single[1:-1].replace('"', '\\"').replace("\\'", "'") + '"'))
        else:
            value = options.get(option, 1 if option == "extra_networks_default_multiplier" else "")
            parts.append(str(value))
        position = match.end()
    return "".join(parts)


class ExtraNetworksPage:
    """Subclass it: set the title in __init__, implement list_items() (and refresh() to rescan)."""

    def __init__(self, title: str):
        self.title = title
        self.name = title.lower()
        self.id_page = self.name.replace(" ", "_")
        self.items: dict = {}
        self.allow_prompt = True
        self.allow_negative_prompt = False

    def refresh(self) -> None:
        pass

    def list_items(self):
        raise NotImplementedError(f"{type(self).__name__} must implement list_items()")

    def create_item(self, name, index=None, enable_filter=True):
        raise NotImplementedError(f"{type(self).__name__} must implement create_item()")

    def allowed_directories_for_previews(self) -> list[str]:
        return []

    def find_preview(self, path: str) -> str | None:
        """The preview image beside `path` (its name without extension): .png, .preview.png, .jpg..."""
        stem = os.path.splitext(path)[0]
        for ext in PREVIEW_EXTENSIONS:
            for candidate in (f"{stem}.{ext}", f"{stem}.preview.{ext}"):
                if os.path.isfile(candidate):
                    return candidate
        return None

    def find_description(self, path: str) -> str | None:
        """The text of `path`'s .txt or .description.txt file beside it."""
        stem = os.path.splitext(path)[0]
        for candidate in (f"{stem}.txt", f"{stem}.description.txt"):
            try:
                return Path(candidate).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
        return None

    def search_terms_from_path(self, filename: str, possible_directories=None) -> str:
        """The file's path below whichever allowed directory holds it (A1111 searches cards by it)."""
        absolute = os.path.abspath(filename)
        for directory in possible_directories or self.allowed_directories_for_previews():
            parent = os.path.abspath(directory)
            if absolute.startswith(parent + os.sep):
                return absolute[len(parent):].replace("\\", "/")
        return ""

    def link_preview(self, filename: str) -> str:
        return "./file=" + filename.replace("\\", "/")


def register_page(page: ExtraNetworksPage) -> None:
    compat.state().extra_networks.pages.append(page)


_missing = compat.report_missing_names(__name__)


def __getattr__(name: str):
    if name == "extra_pages":  # A1111's module-level list of the registered pages
        return compat.state().extra_networks.pages
    return _missing(name)  # recorded for the extension that asked (diagnostics)
