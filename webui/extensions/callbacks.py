"""Global callbacks (A1111's `modules.script_callbacks`): named lists of functions per category.

One `CallbackRegistry` lives on each SharedState. A callback registered while a script file is
imported (inside `scripts.loading`) is owned by that file, so a reload can drop exactly its
callbacks. A callback that raises is logged and recorded in `errors`; the others still run.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

CATEGORIES = ("app_started", "before_reload", "model_loaded", "ui_tabs", "ui_train_tabs", "ui_settings",
              "before_image_saved", "image_saved", "extra_noise", "cfg_denoiser", "cfg_denoised",
              "cfg_after_cfg", "before_component", "after_component", "image_grid", "infotext_pasted",
              "script_unloaded", "before_ui", "list_optimizers", "list_unets", "before_token_counter")

# The file being imported right now (set by scripts.loading), per thread: it owns new callbacks.
_current = threading.local()


def current_owner() -> str | None:
    return getattr(_current, "path", None)


def set_current_owner(path: str | None) -> str | None:
    """Make `path` own callbacks added from now on; returns the previous owner to restore."""
    previous = current_owner()
    _current.path = path
    return previous


@dataclass
class Callback:
    fn: Callable
    owner: str | None  # the script file that registered it, or None
    name: str


class CallbackRegistry:
    def __init__(self):
        self._lock = threading.Lock()
        self._lists: dict[str, list[Callback]] = {category: [] for category in CATEGORIES}
        self.errors: list[tuple[str, str, str]] = []  # (category, callback name, message)

    def add(self, category: str, fn: Callable, *, name: str | None = None) -> None:
        if category not in self._lists:
            raise ValueError(f"unknown callback category {category!r}")
        if not callable(fn):
            raise TypeError(f"callback for {category!r} must be callable, not {fn!r}")
        owner = current_owner()
        label = name or f"{Path(owner).name if owner else '?'}/{getattr(fn, '__name__', 'callback')}"
        with self._lock:
            self._lists[category].append(Callback(fn, owner, f"{label}/{category}"))

    def callbacks(self, category: str) -> list[Callback]:
        with self._lock:
            return list(self._lists[category])

    def run(self, category: str, *args, **kwargs) -> list:
        """Call every callback of `category` in order; the results of those that did not raise."""
        results = []
        for callback in self.callbacks(category):
            try:
                results.append(callback.fn(*args, **kwargs))
            except Exception as error:
                log.exception("error running callback %s", callback.name)
                self.errors.append((category, callback.name, f"{type(error).__name__}: {error}"))
        return results

    def remove_owner(self, path) -> None:
        owner = str(path)
        with self._lock:
            for category, entries in self._lists.items():
                self._lists[category] = [c for c in entries if c.owner != owner]

    def remove_function(self, fn: Callable) -> None:
        with self._lock:
            for category, entries in self._lists.items():
                self._lists[category] = [c for c in entries if c.fn != fn]

    def clear(self) -> None:
        with self._lock:
            for entries in self._lists.values():
                entries.clear()
            self.errors.clear()


# -- A1111's parameter classes (same names and fields; scripts read and write them) -------------

class ImageSaveParams:
    def __init__(self, image, p, filename: str, pnginfo: dict):
        self.image = image  # the PIL image to be saved; a callback may replace it
        self.p = p  # the processing object (None when saved outside generation)
        self.filename = filename  # the path it is saved to; a callback may change it
        self.pnginfo = pnginfo  # text chunks; "parameters" is the infotext


@dataclass
class ExtraNoiseParams:
    noise: Any
    x: Any
    xi: Any


@dataclass
class CFGDenoiserParams:
    x: Any  # the latent batch the model sees (cond and uncond copies); writable
    image_cond: Any
    sigma: Any
    sampling_step: int
    total_sampling_steps: int
    text_cond: Any
    text_uncond: Any
    denoiser: Any = None


@dataclass
class CFGDenoisedParams:
    x: Any  # the model's outputs before the CFG combination; writable
    sampling_step: int
    total_sampling_steps: int
    inner_model: Any = None


@dataclass
class AfterCFGCallbackParams:
    x: Any  # the denoised latent after the CFG combination; writable
    sampling_step: int
    total_sampling_steps: int


@dataclass
class UiTrainTabParams:
    txt2img_preview_params: Any


@dataclass
class ImageGridLoopParams:
    imgs: list
    cols: int
    rows: int


@dataclass
class BeforeTokenCounterParams:
    prompt: str
    steps: int
    styles: list = field(default_factory=list)
    is_positive: bool = True
