"""The word lists CLIP ranks an image against (artists, flavors, mediums, movements).

Our own short lists ship in `lists/`; a user's `<name>.txt` in `models/clip_interrogator/` replaces the one
of that name (or adds a category), so the long community lists can be used without shipping them. As in
A1111, a file named `<name>.top<N>.txt` contributes its N best matches (others: the best one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

BUNDLED_LISTS = Path(__file__).resolve().parent / "lists"
_TOP_COUNT = re.compile(r"^(?P<name>.+?)\.top(?P<count>\d+)$")


@dataclass(frozen=True)
class Category:
    name: str  # "artists", "flavors", ...
    top_count: int  # how many of its best matches go into the result
    items: tuple[str, ...]
    source: Path  # the file it was read from


def category_of(path: Path) -> Category:
    """One list file: one entry per non-empty line."""
    match = _TOP_COUNT.match(path.stem)
    name, top_count = (match["name"], int(match["count"])) if match else (path.stem, 1)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return Category(name, max(top_count, 1), tuple(line.strip() for line in lines if line.strip()), path)


def load_categories(user_folder: Path | None, skip: tuple[str, ...] | list[str] = ()) -> list[Category]:
    """The bundled lists, each replaced by the user's file of the same category name when there is one,
    plus the user's other lists; sorted by name, empty ones and the `skip`ped names left out."""
    found = {category.name: category for category in map(category_of, sorted(BUNDLED_LISTS.glob("*.txt")))}
    if user_folder is not None and user_folder.is_dir():
        for path in sorted(user_folder.glob("*.txt")):
            if path.is_file():
                category = category_of(path)
                found[category.name] = category
    return [found[name] for name in sorted(found) if found[name].items and name not in skip]
