"""Prompt styles in styles.csv, A1111's format: a header row name,prompt,negative_prompt, then
one style a row. Used by the UI's style picker and the API's `styles` field.

The file is often edited by hand, so it is read strictly and every problem is reported (in the
UI under the Styles picker, in the API's prompt-styles reply, in the log) while the rows that
can be read are kept: a quote left open no longer swallows the styles after it, and a file
that is not UTF-8 no longer empties the list. A file with problems is not written over.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from prompt_parser import apply_styles_to_prompt

from .auth import Caller
from .generation.params import ParamsError
from .state import SharedState

log = logging.getLogger(__name__)


def styles_path(state: SharedState) -> Path:
    # The file comes from the command line (the server's owner), never from a request.
    flags = state.flags
    return Path(flags.styles_file) if getattr(flags, "styles_file", None) else flags.data_dir / "styles.csv"


@dataclass
class StylesFile:
    """styles.csv as read: the styles by name, in file order, and what could not be read, one line each."""

    styles: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def load_styles(state: SharedState) -> StylesFile:
    """The styles file with its problems; an absent file means no styles and no problems."""
    path = styles_path(state)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return StylesFile()
    except OSError as error:
        found = StylesFile(problems=[f"{path.name} cannot be read ({error.strerror or error})"])
    else:
        found = parse_styles(data, path.name)
    for problem in found.problems:
        log.warning("%s", problem)
    return found


def read_styles(state: SharedState) -> dict[str, dict[str, str]]:
    """Styles by name, in file order: those that could be read (see `load_styles` for the problems)."""
    return load_styles(state).styles


def parse_styles(data: bytes, label: str = "styles.csv") -> StylesFile:
    """The styles in the bytes of a styles file, read strictly: a row that breaks the CSV rules
    is skipped and reported, and reading goes on at the line after it."""
    found = StylesFile()
    try:
        text, undecodable = data.decode("utf-8-sig"), False
    except UnicodeDecodeError as error:
        text, undecodable = data.decode("utf-8-sig", errors="replace"), True
        found.problems.append(f"{label} is not UTF-8 text (byte {error.start}); save it as UTF-8")
    lines = io.StringIO(text, newline="").readlines()  # CSV's own line ends, kept for the reader
    header: list[str] | None = None
    for first, last, fields in _csv_records(lines, label, found.problems):
        if not any(value.strip() for value in fields):
            continue
        if header is None:
            header = [value.strip() for value in fields]
            if "name" not in header:
                found.problems.append(f"{label} line {first}: the first row must be the header "
                                      "name,prompt,negative_prompt; no styles read")
                return found
            continue
        row = dict(zip(header, fields))
        name = (row.get("name") or "").strip()
        where = f"{label} line {first}: style {name!r}"
        if any(value.strip() for value in fields[len(header):]):
            found.problems.append(f"{where} has {len(fields)} fields where the header has {len(header)} "
                                  "(a prompt with commas must be in double quotes); skipped")
            continue
        if undecodable and any("\ufffd" in value for value in fields):
            found.problems.append(f"{where} holds bytes that are not UTF-8 text; skipped")
            continue
        if last > first and len(fields) < len(header):
            # What a quote left open looks like when a later line happens to close it.
            found.problems.append(f"{where}: its quoted text runs on to line {last} and the row has only "
                                  f"{len(fields)} of {len(header)} fields; a quote left open? kept as read")
        if not name:
            continue
        if name in found.styles:
            found.problems.append(f"{where} repeats a name; this later row is used")
        found.styles[name] = {"name": name, "prompt": row.get("prompt", row.get("text")) or "",
                              "negative_prompt": row.get("negative_prompt") or ""}
    return found


def _csv_records(lines: list[str], label: str, problems: list[str]):
    """(first line, last line, fields) of each CSV record; a record that breaks the rules (a quote
    never closed, text after a closing quote) is reported, and reading starts again on the line
    after its first, so one stray quote costs one row rather than every row after it."""
    start = 0
    while start < len(lines):
        reader = csv.reader(lines[start:], strict=True, skipinitialspace=True)
        while True:
            first = start + reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                name = lines[first - 1].split(",", 1)[0].strip()
                why = ("a quote opened here is never closed" if "end of data" in str(error)
                       else f"a quote out of place ({error})")
                problems.append(f"{label} line {first}: style {name!r}: {why}; skipped")
                start = first
                break
            yield first, start + reader.line_num, fields


def apply_styles(state: SharedState, names: list[str], prompt: str, negative_prompt: str) -> tuple[str, str]:
    """The prompts with the named styles merged in, in order (A1111's merge rules)."""
    found = load_styles(state)
    styles = found.styles
    missing = [name for name in names if name not in styles]
    if missing:
        hint = f" ({'; '.join(found.problems)})" if found.problems else ""
        raise ParamsError(f"styles: no style named {', '.join(map(repr, missing))}{hint}")
    return (apply_styles_to_prompt(prompt, [styles[n]["prompt"] for n in names]),
            apply_styles_to_prompt(negative_prompt, [styles[n]["negative_prompt"] for n in names]))


class StylesRefused(PermissionError):
    """The caller may apply styles but not write styles.csv; the message says why."""


def write_refusal(state: SharedState, caller: Caller) -> str | None:
    """Why `caller` may not write styles.csv, or None if they may. The file is everyone's: with a login
    and --admin-users, only admins write it. With a login and no admins every user still may (A1111's
    behaviour; naming admins is how a shared server locks it); without a login, everyone, as in A1111."""
    access = state.access
    if not access.login_required or not access.admins or caller.user in access.admins:
        return None
    who = f"you are logged in as {caller.user}" if caller.user else "you are not logged in"
    return (f"Only admins can save styles, which everyone shares ({who}; admins are named by --admin-users). "
            "You can still apply the saved styles.")


def save_style(state: SharedState, name: str, prompt: str, negative_prompt: str, caller: Caller = Caller()) -> None:
    """Add or replace a style, keeping the others and their order; written atomically. Raises
    StylesRefused when `caller` (default: anonymous) may not write styles (write_refusal)."""
    if (refusal := write_refusal(state, caller)) is not None:
        raise StylesRefused(refusal)
    name = name.strip()
    if not name:
        raise ParamsError("a style needs a name")
    found = load_styles(state)
    if found.problems:  # writing the readable rows back would drop the others for good
        raise ParamsError(f"style {name!r} not saved: fix {styles_path(state).name} first: {'; '.join(found.problems)}")
    styles = found.styles
    styles[name] = {"name": name, "prompt": prompt, "negative_prompt": negative_prompt}
    path = styles_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "prompt", "negative_prompt"])
        writer.writeheader()
        writer.writerows(styles.values())
    os.replace(handle.name, path)
