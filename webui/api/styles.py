"""styles.csv in A1111's format: name, prompt, negative_prompt (a header row, then one style a row)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from ..state import SharedState

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
