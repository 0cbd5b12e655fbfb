"""A1111's file-name patterns: `[seed]-[prompt_words]` and the other [tags] of its "Images filename
pattern" and "Directory name pattern" settings, filled in for one image, and the rule that keeps each part
a safe file name.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import string
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

MAX_FILENAME_PART_LENGTH = 128  # A1111's --filenames-max-length default
DEFAULT_TIME_FORMAT = "%Y%m%d%H%M%S"

_INVALID_FILENAME_CHARS = '#<>:"/\\|?*\n\r\t'
_NON_LETTERS = re.compile(r"[\s" + re.escape(string.punctuation) + "]+")
# A pattern is literal text with [tag] or [tag<arg><arg>...] in it.
_PATTERN_PART = re.compile(r"(.*?)(?:\[([^\[\]]+)\]|$)")
_TAG_ARGUMENT = re.compile(r"(.*)<([^>]*)>$")
# A tag that gives this leaves out itself and the literal text just before it, so that
# "[seed]-[batch_number]" reads "1234" for a single image rather than "1234-".
_SKIP = object()

def sanitize_filename_part(text: str | None, replace_spaces: bool = True) -> str | None:
    """Text made safe for a file name: characters Windows forbids become "_", at most 128 long."""
    if text is None:
        return None
    if replace_spaces:
        text = text.replace(" ", "_")
    text = text.translate({ord(c): "_" for c in _INVALID_FILENAME_CHARS})
    text = text.lstrip(" ")[:MAX_FILENAME_PART_LENGTH]
    return text.rstrip(" .")  # Windows drops trailing spaces and dots


@dataclass
class FilenameInfo:
    """What the pattern tags may use besides the seed, the prompt and the image.

    A tag whose value is not known (None) stays in the name as written, like in A1111.
    `scheduler` should be the resolved label ("Karras"), not "Automatic".
    """

    negative_prompt: str = ""
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    model_name: str | None = None
    model_hash: str | None = None
    vae_name: str | None = None
    denoising_strength: float | None = None
    clip_skip: int | None = None
    styles: Sequence[str] = ()
    all_seeds: Sequence[int] = ()
    batch_size: int = 1
    batch_index: int = 0
    n_iter: int = 1
    iteration: int = 0
    job_timestamp: str | None = None
    user: str | None = None
    max_prompt_words: int = 8  # A1111's "directories_max_prompt_words"


class _TagValues:
    """The values of A1111's filename tags for one image."""

    def __init__(self, seed: int | None, prompt: str | None, image: Image.Image | None, info: FilenameInfo | None):
        self.seed = seed
        self.prompt = prompt
        self.image = image
        self.info = info
        self.tags: dict[str, Callable[..., object]] = {
            "seed": lambda: self.seed if self.seed is not None else "",
            "seed_first": self.seed_first,
            "seed_last": self.seed_last,
            "steps": lambda: self.known("steps"),
            "cfg": lambda: self.known("cfg_scale"),
            "width": lambda: self.image.width,
            "height": lambda: self.image.height,
            "styles": self.styles,
            "sampler": lambda: sanitize_filename_part(self.known("sampler"), replace_spaces=False),
            "scheduler": lambda: self.sampler_scheduler(with_sampler=False),
            "sampler_scheduler": lambda: self.sampler_scheduler(with_sampler=True),
            "model_hash": lambda: self.known("model_hash"),
            "model_name": lambda: sanitize_filename_part(self.known("model_name"), replace_spaces=False),
            "vae_filename": self.vae_filename,
            "date": lambda: datetime.datetime.now().strftime("%Y-%m-%d"),
            "datetime": self.datetime,
            "job_timestamp": self.job_timestamp,
            "prompt_hash": lambda *args: self.string_hash(self.prompt, *args),
            "negative_prompt_hash": lambda *args: self.string_hash(self.known("negative_prompt"), *args),
            "full_prompt_hash": lambda *args: self.string_hash(f"{self.prompt} {self.known('negative_prompt')}", *args),
            "prompt": lambda: sanitize_filename_part(self.prompt),
            "prompt_spaces": lambda: sanitize_filename_part(self.prompt, replace_spaces=False),
            "prompt_words": self.prompt_words,
            "hasprompt": self.hasprompt,
            "batch_number": self.batch_number,
            "batch_size": lambda: self.known("batch_size"),
            "generation_number": self.generation_number,
            "clip_skip": lambda: self.known("clip_skip"),
            "denoising": self.denoising,
            "user": lambda: self.known("user"),
            "image_hash": self.image_hash,
            "none": lambda: "",  # for a name that is only the number
        }

    def known(self, field: str) -> object:
        return getattr(self.info, field) if self.info is not None else None

    def seed_first(self) -> object:
        if self.info is None:
            return None
        return self.seed if self.info.batch_size == 1 else self.info.all_seeds[0]

    def seed_last(self) -> object:
        if self.info is None:
            return None
        return _SKIP if self.info.batch_size == 1 else self.info.all_seeds[-1]

    def styles(self) -> str | None:
        if self.info is None:
            return None
        names = ", ".join(style for style in self.info.styles if style != "None")
        return sanitize_filename_part(names or "None", replace_spaces=False)

    def sampler_scheduler(self, with_sampler: bool) -> object:
        if self.info is None or self.info.scheduler is None or self.info.sampler is None:
            return _SKIP
        label = self.info.scheduler.capitalize()  # A1111 writes "Karras", "Align your steps"
        text = f"{self.info.sampler} {label}" if with_sampler else label
        return sanitize_filename_part(text, replace_spaces=False)

    def vae_filename(self) -> str | None:
        if self.info is None:
            return None
        if not self.info.vae_name:
            return "NoneType"  # what A1111 writes when no separate VAE is loaded
        parts = Path(self.info.vae_name).name.split(".")
        return parts[1] if len(parts) > 1 and parts[0] == "" else parts[0]

    def datetime(self, time_format: str = "", zone: str | None = None) -> str | None:
        try:
            tz = zoneinfo.ZoneInfo(zone) if zone else None
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            tz = None  # unknown zone: local time, as A1111
        now = datetime.datetime.now().astimezone(tz)
        try:
            formatted = now.strftime(time_format or DEFAULT_TIME_FORMAT)
        except (ValueError, TypeError):
            formatted = now.strftime(DEFAULT_TIME_FORMAT)
        return sanitize_filename_part(formatted, replace_spaces=False)

    def job_timestamp(self) -> str:
        stamp = self.known("job_timestamp")
        return str(stamp) if stamp else datetime.datetime.now().strftime(DEFAULT_TIME_FORMAT)

    def string_hash(self, text: object, length: str = "") -> str | None:
        if text is None:
            return None
        return hashlib.sha256(str(text).encode()).hexdigest()[: int(length) if length else 8]

    def prompt_words(self) -> str | None:
        words = [word for word in _NON_LETTERS.split(self.prompt or "") if word] or ["empty"]
        limit = self.info.max_prompt_words if self.info is not None else 8
        return sanitize_filename_part(" ".join(words[:limit]), replace_spaces=False)

    def hasprompt(self, *choices: str) -> str | None:
        """[hasprompt<cat|nocat><dog>]: each word found in the prompt, else its default."""
        if self.prompt is None:
            return None
        lower = self.prompt.lower()
        result = ""
        for choice in choices:
            if not choice:
                continue
            expected, default = (choice.split("|") + [""])[:2]
            expected = expected.lower()
            result += expected if expected in lower else default
        return sanitize_filename_part(result)

    def batch_number(self) -> object:
        if self.info is None:
            return None
        return _SKIP if self.info.batch_size == 1 else self.info.batch_index + 1

    def generation_number(self) -> object:
        if self.info is None:
            return None
        if self.info.n_iter == 1 and self.info.batch_size == 1:
            return _SKIP
        return self.info.iteration * self.info.batch_size + self.info.batch_index + 1

    def denoising(self) -> object:
        if self.info is None:
            return None
        return self.info.denoising_strength if self.info.denoising_strength else _SKIP

    def image_hash(self, length: str = "") -> str | None:
        if self.image is None:
            return None
        digest = hashlib.sha256(self.image.tobytes()).hexdigest()
        return digest[: int(length)] if length else digest


def apply_filename_pattern(
    pattern: str,
    *,
    seed: int | None = None,
    prompt: str | None = None,
    image: Image.Image | None = None,
    info: FilenameInfo | None = None,
) -> str:
    """Fill in A1111's [tags] (case-insensitive, with <arguments>); unknown tags stay as written."""
    values = _TagValues(seed, prompt, image, info)
    result = ""
    for match in _PATTERN_PART.finditer(pattern):
        text, tag = match.groups()
        if tag is None:
            result += text
            continue
        name, args = tag, []
        while argument := _TAG_ARGUMENT.match(name):
            name = argument.group(1)
            args.insert(0, argument.group(2))
        function = values.tags.get(name.lower())
        value = None
        if function is not None:
            try:
                value = function(*args)
            except (AttributeError, TypeError, ValueError, IndexError):
                value = None  # a tag that cannot be filled in stays as written
        if value is _SKIP:
            continue
        result += text + (str(value) if value is not None else f"[{name}]")
    return result
