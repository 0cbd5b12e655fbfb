"""Prompt styles in styles.csv, A1111's format: a header row name,prompt,negative_prompt, then
one style a row. Used by the UI's style picker and the API's `styles` field."""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from pathlib import Path

from prompt_parser import apply_styles_to_prompt

from .generation.params import ParamsError
from .state import SharedState

log = logging.getLogger(__name__)


def styles_path(state: SharedState) -> Path:
    # The file comes from the command line (the server's owner), never from a request.
    flags = state.flags
    return Path(flags.styles_file) if getattr(flags, "styles_file", None) else flags.data_dir / "styles.csv"


def read_styles(state: SharedState) -> dict[str, dict[str, str]]:
    """Styles by name, in file order; an absent or unreadable file means no styles."""
    path = styles_path(state)
    styles: dict[str, dict[str, str]] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for row in csv.DictReader(handle, skipinitialspace=True):
                name = (row.get("name") or "").strip()
                if name:
                    styles[name] = {"name": name, "prompt": row.get("prompt") or "",
                                    "negative_prompt": row.get("negative_prompt") or ""}
    except FileNotFoundError:
        pass
    except (OSError, csv.Error, UnicodeDecodeError) as error:
        log.warning("cannot read %s: %s", path, error)
    return styles


def apply_styles(state: SharedState, names: list[str], prompt: str, negative_prompt: str) -> tuple[str, str]:
    """The prompts with the named styles merged in, in order (A1111's merge rules)."""
    styles = read_styles(state)
    missing = [name for name in names if name not in styles]
    if missing:
        raise ParamsError(f"styles: no style named {', '.join(map(repr, missing))}")
    return (apply_styles_to_prompt(prompt, [styles[n]["prompt"] for n in names]),
            apply_styles_to_prompt(negative_prompt, [styles[n]["negative_prompt"] for n in names]))


def save_style(state: SharedState, name: str, prompt: str, negative_prompt: str) -> None:
    """Add or replace a style, keeping the others and their order; written atomically."""
    name = name.strip()
    if not name:
        raise ParamsError("a style needs a name")
    styles = read_styles(state)
    styles[name] = {"name": name, "prompt": prompt, "negative_prompt": negative_prompt}
    path = styles_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "prompt", "negative_prompt"])
        writer.writeheader()
        writer.writerows(styles.values())
    os.replace(handle.name, path)
