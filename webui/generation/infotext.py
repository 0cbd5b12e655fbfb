"""Infotext: the "parameters" text A1111 writes into every image, and reading it back.

Layout (byte-compatible with A1111):

    <prompt, any number of lines>
    Negative prompt: <negative prompt, any number of lines>     (only when not empty)
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, ...

Reading it back gives A1111's dictionary: "Prompt", "Negative prompt", one key per pair
(string values; `WxH` values split into "Key-1"/"Key-2"), and A1111's defaults for the
keys an older or shorter infotext leaves out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping

from packaging.version import InvalidVersion, Version

from prompt_parser import attention_runs

# The generator's fixed part, in A1111's order; extras follow in insertion order, then
# TRAILING_FIELDS. "Denoising strength" keeps its slot here even when it comes as an extra.
INFOTEXT_FIELD_ORDER = (
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Distilled CFG Scale",
    "Image CFG scale",
    "Seed",
    "Face restoration",
    "Size",
    "Model hash",
    "Model",
    "FP8 weight",
    "Cache FP16 weight for LoRA",
    "VAE hash",
    "VAE",
    "Variation seed",
    "Variation seed strength",
    "Seed resize from",
    "Denoising strength",
    "Conditional mask weight",
    "Clip skip",
    "ENSD",
    "Token merging ratio",
    "Token merging ratio hr",
    "Init image hash",
    "RNG",
    "Tiling",
)
TRAILING_FIELDS = ("Version", "User")

NEGATIVE_PROMPT_LABEL = "Negative prompt:"

# One `Key: value` pair of the parameter line. The key starts with a word character and
# may go on with word characters, spaces, '-' and '/'. The value is a double-quoted string
# (backslash escapes allowed) or everything up to the next comma.
_PAIR = re.compile(
    r"""
    \s* (\w[\w \-/]+) : \s*
    ( "(?:\\.|[^\\"])+" | [^,]* )
    (?: , | $ )
    """,
    re.VERBOSE,
)
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_MIN_PAIRS_ON_PARAMETER_LINE = 3

# Keys A1111 fills in when an infotext lacks them: the value that was in force then.
_DEFAULTS: tuple[tuple[str, object], ...] = (
    ("Hires sampler", "Use same sampler"),
    ("Hires schedule type", "Use same scheduler"),
    ("Hires checkpoint", "Use same checkpoint"),
    ("Hires prompt", ""),
    ("Hires negative prompt", ""),
    ("Mask mode", "Inpaint masked"),
    ("Masked content", "original"),
    ("Inpaint area", "Whole picture"),
    ("Masked area padding", 32),
)
_LATER_DEFAULTS: tuple[tuple[str, object], ...] = (
    ("RNG", "GPU"),
    ("Schedule type", "Automatic"),
    ("Schedule max sigma", 0),
    ("Schedule min sigma", 0),
    ("Schedule rho", 0),
    ("VAE Encoder", "Full"),
    ("VAE Decoder", "Full"),
    ("FP8 weight", "Disable"),
)

# Versions where A1111 changed behaviour that infotexts from before them relied on.
V1_6_0 = Version("1.6.0")
V1_7_0_ZERO_TERMINAL_SNR = Version("1.7.0.post225")
V1_8_0 = Version("1.8.0")


def quote(value: object) -> object:
    """A value as A1111 writes it: JSON-quoted only if it has a comma, newline or colon."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except TypeError:  # not JSON data (A1111 would fail here): quote its text
        return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    """Undo `quote` for a double-quoted value; anything else comes back unchanged."""
    if not text or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def order_params(params: Mapping[str, object]) -> dict[str, object]:
    """`params` in A1111's order: fixed fields, then extras as given, then Version and User."""
    fixed = {key: params[key] for key in INFOTEXT_FIELD_ORDER if key in params}
    special = set(INFOTEXT_FIELD_ORDER) | set(TRAILING_FIELDS)
    extras = {key: value for key, value in params.items() if key not in special}
    trailing = {key: params[key] for key in TRAILING_FIELDS if key in params}
    return {**fixed, **extras, **trailing}


def create_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """The infotext for one image. `params` are written in the order given; None is left out."""
    pairs = ", ".join(
        key if key == value else f"{key}: {quote(value)}" for key, value in params.items() if value is not None
    )
    negative = f"\n{NEGATIVE_PROMPT_LABEL} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{pairs}".strip()


def parse_version(text: object) -> Version | None:
    """The version in a "Version" field ("v1.7.0-225-g1234abc" reads as 1.7.0.post225)."""
    if not isinstance(text, str):
        return None
    # `git describe` adds "-<commits>-g<hash>": keep the tag and the commit count only.
    match = re.match(r"([^-]+-[^-]+)-.*", text)
    if match:
        text = match.group(1)
    try:
        return Version(text)
    except InvalidVersion:
        return None


def parse_infotext(text: str, *, skip_fields: Iterable[str] = (), backcompat: bool = True) -> dict[str, object]:
    """A1111's parse_generation_parameters: the dictionary of an infotext.

    Values read from the text are strings, as in A1111; the defaults it adds keep its types
    (0 and 32 as ints, back-compat flags as booleans). `backcompat` is A1111's
    "auto_backcompat" setting; `skip_fields` its "infotext_skip_pasting".
    """
    *lines, last_line = text.strip().split("\n")
    if len(_PAIR.findall(last_line)) < _MIN_PAIRS_ON_PARAMETER_LINE:
        lines.append(last_line)  # too few pairs: it is prompt text
        last_line = ""

    result: dict[str, object] = {}
    prompt = negative_prompt = ""
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE_PROMPT_LABEL):
            in_negative = True
            line = line[len(NEGATIVE_PROMPT_LABEL):].strip()
        if in_negative:
            negative_prompt = _add_line(negative_prompt, line)
        else:
            prompt = _add_line(prompt, line)

    for key, value in _PAIR.findall(last_line):
        if not value:
            continue  # A1111 fails on an empty value and skips the pair
        value = unquote(value)
        size = _SIZE.match(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.group(1), size.group(2)
        else:
            result[key] = value

    result["Prompt"] = prompt
    result["Negative prompt"] = negative_prompt
    _fill_defaults(result, prompt, negative_prompt)
    if backcompat:
        _apply_backcompat(result)
    for key in skip_fields:
        result.pop(key, None)
    return result


def _add_line(text: str, line: str) -> str:
    # As in A1111, empty lines before the first non-empty one are dropped (no separator yet).
    return f"{text}\n{line}" if text else line


def _fill_defaults(result: dict[str, object], prompt: str, negative_prompt: str) -> None:
    result.setdefault("Clip skip", "1")  # absent means the default, 1

    hypernet = result.get("Hypernet")
    if hypernet is not None:  # old infotexts named the hypernetwork; make it a prompt tag again
        result["Prompt"] = f"{result['Prompt']}<hypernet:{hypernet}:{result.get('Hypernet strength', '1.0')}>"

    if "Hires resize-1" not in result:
        result["Hires resize-1"] = 0
        result["Hires resize-2"] = 0
    for key, value in _DEFAULTS:
        result.setdefault(key, value)

    _restore_old_hires_fix(result)

    for key, value in _LATER_DEFAULTS:
        result.setdefault(key, value)
    if "Cache FP16 weight for LoRA" not in result and result["FP8 weight"] != "Disable":
        result["Cache FP16 weight for LoRA"] = False

    if "Emphasis" not in result and (_uses_emphasis(prompt) or _uses_emphasis(negative_prompt)):
        result["Emphasis"] = "Original"  # written only when it differs; absent meant the old default
    result.setdefault("Refiner switch by sampling steps", False)


def _uses_emphasis(text: str) -> bool:
    return any(weight != 1.0 and run != "BREAK" for run, weight in attention_runs(text))


def _restore_old_hires_fix(result: dict[str, object]) -> None:
    """Infotexts from the first hires fix stored "First pass size"; turn it into today's keys."""
    first_width, first_height = result.get("First pass size-1"), result.get("First pass size-2")
    if first_width is None or first_height is None:
        return
    first_width, first_height = int(first_width), int(first_height)
    width, height = int(result.get("Size-1", 512)), int(result.get("Size-2", 512))
    if first_width == 0 or first_height == 0:
        first_width, first_height = old_hires_first_pass_size(width, height)
    result["Size-1"], result["Size-2"] = first_width, first_height
    result["Hires resize-1"], result["Hires resize-2"] = width, height


def old_hires_first_pass_size(width: int, height: int) -> tuple[int, int]:
    """The first hires fix's automatic first pass: about 512x512 px, sides rounded up to 64."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def _apply_backcompat(result: dict[str, object]) -> None:
    """Switch on the compatibility options an infotext's version needs to give the same image."""
    version = parse_version(result.get("Version"))
    if version is None:
        return
    if version < V1_6_0 and "[" in str(result.get("Prompt", "")):
        result["Old prompt editing timelines"] = True
    if version < V1_6_0 and result.get("Sampler", "") in ("DDIM", "PLMS"):
        result["Pad conds v0"] = True
    if version < V1_7_0_ZERO_TERMINAL_SNR:
        result["Downcast alphas_cumprod"] = True
    if version < V1_8_0 and result.get("Refiner"):
        result["Refiner switch by sampling steps"] = True
