"""A1111's script API: the `Script` base class, the registry of loaded script classes, and the
per-tab `ScriptRunner` that instantiates them, builds their UI inputs and calls their hooks.

Script arguments are positional: the runner's `inputs` list holds the "Script" dropdown at index
0, then every script's components; each script owns the slice `args_from:args_to`. The same list
of values (from the UI, or from the API via `default_args` + what the caller sent) reaches every
hook. An exception inside a script hook is logged and recorded in `errors`; generation goes on.
"""

from __future__ import annotations

import inspect
import logging
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import callbacks as _callbacks

log = logging.getLogger(__name__)

AlwaysVisible = object()  # `show()` returns it for an always-on script


class Script:
    """Base class of every extension script (A1111's `modules.scripts.Script`)."""

    name: str | None = None  # the lowercased title, set by the runner
    section: str | None = None
    filename: str | None = None
    args_from: int | None = None
    args_to: int | None = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname: str | None = None
    group = None  # the gr.Group wrapping this script's ui, when there is one
    create_group = True
    infotext_fields = None  # [(component, infotext key or function)], for pasting infotext
    paste_field_names = None
    api_info = None
    controls = None  # the components ui() returned
    setup_for_ui_only = False
    on_before_component_elem_id = None  # [(elem_id, callback)]
    on_after_component_elem_id = None

    def title(self) -> str:
        raise NotImplementedError

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def run(self, p, *args):
        pass

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def after_extra_networks_activate(self, p, *args, **kwargs):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def before_hr(self, p, *args):
        pass

    def post_sample(self, p, ps, *args):
        pass

    def on_mask_blend(self, p, mba, *args):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch_list(self, p, pp, *args, **kwargs):
        pass

    def postprocess_image(self, p, pp, *args):
        pass

    def postprocess_maskoverlay(self, p, ppmo, *args):
        pass

    def postprocess_image_after_composite(self, p, pp, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def before_component(self, component, **kwargs):
        pass

    def after_component(self, component, **kwargs):
        pass

    def on_before_component(self, callback, *, elem_id):
        if self.on_before_component_elem_id is None:
            self.on_before_component_elem_id = []
        self.on_before_component_elem_id.append((elem_id, callback))

    def on_after_component(self, callback, *, elem_id):
        if self.on_after_component_elem_id is None:
            self.on_after_component_elem_id = []
        self.on_after_component_elem_id.append((elem_id, callback))

    def describe(self):
        return ""

    def elem_id(self, item_id) -> str:
        """`script_<tab>_<title>_<item>`, as A1111 names a script's components (the tab only when the
        script shows on both tabs)."""
        tab = f"{'img2img' if self.is_img2img else 'txt2img'}_" if self.show(True) == self.show(False) else ""
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tab}{title}_{item_id}"


class PostprocessImageArgs:
    def __init__(self, image):
        self.image = image


class PostprocessBatchListArgs:
    def __init__(self, images):
        self.images = images


class PostSampleArgs:
    def __init__(self, samples):
        self.samples = samples


@dataclass
class OnComponent:
    component: Any


# -- loading: what basedir() says and who owns new callbacks while a script file is imported ------

_basedir: list[str] = []


def basedir() -> str:
    """The root folder of the extension whose script is being imported (else the project root)."""
    return _basedir[-1] if _basedir else str(Path(__file__).resolve().parents[2])


@contextmanager
def loading(path: Path, basedir: Path):
    """Wrap the import of one script file: `basedir()` gives `basedir`, which also goes first on
    sys.path (extensions import their own packages), and callbacks added are owned by `path`."""
    root = str(basedir)
    _basedir.append(root)
    sys.path.insert(0, root)
    previous_owner = _callbacks.set_current_owner(str(path))
    try:
        yield
    finally:
        _callbacks.set_current_owner(previous_owner)
        if root in sys.path:
            sys.path.remove(root)
        _basedir.pop()


@dataclass
class ScriptClass:
    cls: type
    path: Path
    basedir: Path
    extension: str


class ScriptRegistry:
    """The Script subclasses of every loaded script file, in load order (one per SharedState)."""

    def __init__(self):
        self.classes: list[ScriptClass] = []

    def add_module(self, module, path: Path, basedir: Path, extension: str) -> list[type]:
        """Every Script subclass in the module's namespace, as A1111 registers them: defined there or
        imported (sd-dynamic-prompts' script file only imports its class from its own package). Left
        out: base classes, which have no title() of their own, and a class another script file
        already registered, so that it does not run twice."""
        known = {entry.cls for entry in self.classes}
        found = [obj for obj in vars(module).values()
                 if inspect.isclass(obj) and issubclass(obj, Script) and obj.title is not Script.title
                 and obj not in known]
        self.classes += [ScriptClass(cls, Path(path), Path(basedir), extension) for cls in dict.fromkeys(found)]
        return found

    def clear(self) -> None:
        self.classes.clear()


# The per-tab runner lives in runner.py (it is long); A1111 code finds it here.
from .runner import ScriptRunner, create_runners  # noqa: E402,F401
