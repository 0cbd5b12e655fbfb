"""Gradio 3.41's API, as A1111 extensions use it, on the Gradio we run (6.x).

Two kinds of shims:

- `install()` adds, once and for good, names Gradio 3 had and current Gradio lacks:
  `gr.Box`, `gr.components.IOComponent`, `Component.update(...)` (-> `gr.update`) and
  `.style(...)`. They are needed at any time (extension modules subclass them at import,
  event handlers return `gr.Textbox.update(...)` long after the UI is built) and they change
  nothing Gradio itself does, since Gradio has no such names. It also stops Gradio from writing
  `.pyi` stub files next to every module that subclasses a component (a development aid that
  would litter extension folders and ours), and makes a component subclass with its own
  `__init__(*args, **kwargs)` keep its props (Gradio 4+ reads them off the constructor's
  signature; Gradio 3 did not).
- `extension_ui()` is active only while extension UI code runs on this thread (a script's
  `ui()`, on_ui_tabs, component callbacks, extension settings): then constructors and event
  listeners accept Gradio 3 keywords (`source=`, `tool=`, `_js=`, `Button(variant="tool")`,
  removed arguments dropped with a warning). It patches constructors only while some UI is
  being built and restores them afterwards; other threads see no difference.

`observe_components(callback)` uses the same window to report every block created on this
thread (A1111's before_component/after_component), without patching Gradio for the process.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import threading
import types
from contextlib import contextmanager

import gradio as gr
import gradio.component_meta as component_meta
import gradio.blocks as gradio_blocks
from gradio.blocks import Block, BlockContext
from gradio.blocks_events import BlocksEvents
from gradio.components.base import Component
from gradio.events import Dependency

log = logging.getLogger(__name__)

_local = threading.local()  # compat: depth of extension_ui(); observers; constructing: ids
_lock = threading.RLock()
_users = 0  # open patch windows, over all threads
_saved: list[tuple[type, str, object]] = []  # (class, attribute, original) to restore
_installed = False
_warned: set[tuple[str, str]] = set()
GRADIO3_LAYOUT = "gradio3-layout"  # a layout an extension made with visible=False ...
GRADIO3_HIDDEN = "gradio3-hidden"  # ... and hidden now (page CSS: display none; see assets.head_html)
GRADIO3_CLOSED = "gradio3-closed"  # an accordion made closed: built open, closed by the page script once loaded


def _native(cls: type) -> type:
    """The nearest class of Gradio's own in `cls`'s ancestry."""
    return next(c for c in cls.__mro__ if c.__module__.split(".")[0] == "gradio")


def install() -> None:
    """Add Gradio 3's missing names (see the module docstring); idempotent."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
        gr.components.IOComponent = Component
        Block.update = staticmethod(gr.update)  # Row keeps its own
        Block.style = _style
        original_get_config = Block.get_config

        def get_config(self, cls=None):
            config = original_get_config(self, cls)
            native = _native(type(self))
            if cls is None and native is not type(self):  # a subclass: add the Gradio class's props
                config = {**original_get_config(self, native), **config}
            return config

        Block.get_config = get_config
        gr.Tabs.__exit__ = _tabs_exit(gr.Tabs.__exit__)
        gradio_blocks.postprocess_update_dict = _hidden_layout_update(gradio_blocks.postprocess_update_dict)
        gr.inputs = sys.modules["gradio.inputs"] = _gradio3_inputs()
        from . import ui_components  # noqa: F401  (gr.Box; needs the stub writer off)


def _hidden_layout_update(original):
    """gr.update(visible=...) for a layout kept in the page by its class (gradio3_kwargs): the class comes and
    goes instead, so the layout never leaves the page."""

    @functools.wraps(original)
    def postprocess_update_dict(block, update_dict: dict, postprocess: bool = True):
        classes = _as_list(getattr(block, "elem_classes", None))
        if isinstance(block, BlockContext) and GRADIO3_LAYOUT in classes and "visible" in update_dict:
            shown = update_dict["visible"] is not False
            block.visible = True
            block.elem_classes = [c for c in classes if c != GRADIO3_HIDDEN] + ([] if shown else [GRADIO3_HIDDEN])
            update_dict = {**update_dict, "visible": True, "elem_classes": block.elem_classes}
        return original(block, update_dict, postprocess)

    return postprocess_update_dict


def _tabs_exit(original):
    """Gradio 3 let a gr.Tabs hold other blocks beside its tabs (images-browser keeps a hidden textbox there);
    Gradio 6's tab bar miscounts its tabs then (one shown twice, one missing) and the page can hang. In
    extension UI such a block moves out, just before the Tabs, where Gradio 3 drew it too (above the tabs)."""

    @functools.wraps(original)
    def exit_tabs(self, exc_type=None, *args):
        parent = getattr(self, "parent", None)
        if exc_type is None and _compat_active() and parent is not None and self in parent.children:
            strays = [child for child in self.children if not isinstance(child, gr.Tab) and child.breaks_grouping()]
            for child in strays:
                self.children.remove(child)
                parent.children.insert(parent.children.index(self), child)
                child.parent = parent
        return original(self, exc_type, *args)

    return exit_tabs


def _gradio3_inputs() -> types.ModuleType:
    """`gr.inputs.Slider(...)` and friends (Gradio 3's older names, still used by some extensions): the
    current components, with the Gradio 3 `default=` keyword taken as `value=`."""
    module = types.ModuleType("gradio.inputs", "Gradio 3's gr.inputs, over the current components")

    def factory(cls):
        def make(*args, default=None, **kwargs):
            if default is not None:
                kwargs.setdefault("value", default)
            return cls(*args, **kwargs)
        make.__name__ = make.__qualname__ = cls.__name__
        return make

    for name in ("Textbox", "Number", "Slider", "Checkbox", "CheckboxGroup", "Radio", "Dropdown", "Image", "Video",
                 "Audio", "File", "Dataframe", "Timeseries"):
        cls = getattr(gr, name, None)
        if cls is not None:
            setattr(module, name, factory(cls))
    return module


def _style(self, **kwargs):
    """Gradio 3's `.style(...)`: the few options with a counterpart are applied, the rest ignored."""
    renames = {"grid": "columns", "height": "height", "container": "container", "equal_height": "equal_height",
               "preview": "preview", "object_fit": "object_fit", "size": "size"}
    for key, value in kwargs.items():
        name = renames.get(key)
        if name == "columns" and isinstance(value, (list, tuple)):
            value = value[-1] if value else None
        if name and hasattr(self, name) and value is not None:
            setattr(self, name, value)
    return self


# -- the patch window --------------------------------------------------------------------------

def _classes() -> list[type]:
    found, todo = [], [Block, BlocksEvents]
    while todo:
        cls = todo.pop()
        if cls not in found:
            found.append(cls)
            todo.extend(cls.__subclasses__())
    return found


def _is_listener(value) -> bool:
    return getattr(value, "__qualname__", "").endswith("_setup.<locals>.event_trigger")


def _patch() -> None:
    for cls in _classes():
        for name, value in list(vars(cls).items()):
            if name != "__init__" and not _is_listener(value):
                continue
            try:
                wrapper = _constructor(value) if name == "__init__" else _listener(value)
            except (TypeError, ValueError):  # no readable signature: leave it alone
                continue
            _saved.append((cls, name, value))
            setattr(cls, name, wrapper)


def _restore() -> None:
    while _saved:
        cls, name, value = _saved.pop()
        setattr(cls, name, value)


@contextmanager
def _window():
    """Constructors and listeners wrapped while at least one window is open (any thread)."""
    global _users
    install()
    with _lock:
        if _users == 0:
            _patch()
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _restore()


def _compat_active() -> bool:
    return getattr(_local, "compat", 0) > 0


@contextmanager
def extension_ui():
    """While extension UI code runs on this thread: Gradio 3 keywords are translated."""
    with _window():
        _local.compat = getattr(_local, "compat", 0) + 1
        try:
            yield
        finally:
            _local.compat -= 1


@contextmanager
def observe_components(callback):
    """`callback(phase, block, kwargs)` ("before"/"after") for every block (component or
    layout) created on this thread inside the block; kwargs are the constructor's arguments
    by name, positional ones included."""
    with _window():
        observers = _local.__dict__.setdefault("observers", [])
        observers.append(callback)
        try:
            yield
        finally:
            observers.remove(callback)


def _constructor(original):
    signature = inspect.signature(original)

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        constructing = _local.__dict__.setdefault("constructing", set())
        observers = list(getattr(_local, "observers", ()))
        if id(self) in constructing or not (observers or _compat_active()):
            return original(self, *args, **kwargs)  # an inner super().__init__, or not ours
        if _compat_active():
            kwargs = gradio3_kwargs(type(self), signature, len(args), kwargs)
        try:
            named = signature.bind_partial(self, *args, **kwargs).arguments
        except TypeError:
            named = dict(kwargs)
        named.pop(next(iter(signature.parameters)), None)  # self
        named.update(named.pop("kwargs", None) or {})
        for observer in observers:
            observer("before", self, named)
        constructing.add(id(self))
        try:
            result = original(self, *args, **kwargs)
        finally:
            constructing.discard(id(self))
        for observer in observers:
            observer("after", self, named)
        return result

    return init


def _warn(owner: str, key: str) -> None:
    if (owner, key) not in _warned:
        _warned.add((owner, key))
        log.warning("%s: Gradio 3 argument %r has no counterpart in Gradio %s; ignored", owner, key, gr.__version__)


def gradio3_kwargs(cls: type, signature: inspect.Signature, positional: int, kwargs: dict) -> dict:
    """A constructor's Gradio 3 keywords in today's terms."""
    kwargs = dict(kwargs)
    kwargs.pop("tooltip", None)  # A1111's own addition to every component
    native = _native(cls)
    if "source" in kwargs and "sources" not in kwargs:
        source = kwargs.pop("source")
        sources = {"canvas": "upload", "upload": "upload", "webcam": "webcam", "microphone": "microphone"}
        kwargs["sources"] = [sources.get(source, "upload")]
    if issubclass(native, gr.Button) and kwargs.get("variant") == "tool":
        kwargs["variant"] = "secondary"
        kwargs["elem_classes"] = [*_as_list(kwargs.get("elem_classes")), "tool"]
    if issubclass(native, (gr.File, gr.UploadButton)) and kwargs.get("type") in ("file", "bytes"):
        kwargs["type"] = "filepath" if kwargs["type"] == "file" else "binary"
    if issubclass(native, gr.Dropdown):
        kwargs.setdefault("allow_custom_value", True)  # Gradio 3 never checked values against choices
    if issubclass(native, gr.Tabs) and "overflow_behavior" in signature.parameters:
        kwargs.setdefault("overflow_behavior", "wrap")  # Gradio 3's tab bar: one button per tab, wrapped
    if issubclass(native, gr.Accordion) and kwargs.get("open") is False:
        # Gradio 3 put a closed accordion's content in the page; Gradio 6 builds it only when first opened,
        # and extensions' page scripts click buttons inside (sd-dynamic-prompts' "Refresh wildcards"). So it is
        # built open, its content hidden by a class, and webui.js closes it before onUiLoaded.
        kwargs["open"] = True
        kwargs["elem_classes"] = [*_as_list(kwargs.get("elem_classes")), GRADIO3_CLOSED]
    if kwargs.get("visible") is False and not issubclass(native, gr.Tab):
        # Gradio 3 put invisible blocks in the page, hidden; extensions' page scripts read and click them
        # (a hidden textbox as a bridge, a hidden "refresh" button in a hidden row). Gradio 4+ leaves
        # visible=False out of the page entirely. Components have Gradio's own visible="hidden"; layouts
        # ignore it, so they stay drawn and a class hides them (see hidden_layout_update).
        if issubclass(native, BlockContext):
            kwargs["visible"] = True
            kwargs["elem_classes"] = [*_as_list(kwargs.get("elem_classes")), GRADIO3_LAYOUT, GRADIO3_HIDDEN]
        elif _accepts_hidden(signature):
            kwargs["visible"] = "hidden"
    parameters = signature.parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        for key in [k for k in kwargs if k not in parameters]:
            _warn(cls.__name__, key)
            del kwargs[key]
    return kwargs


def _accepts_hidden(signature: inspect.Signature) -> bool:
    parameter = signature.parameters.get("visible")
    return parameter is not None and "hidden" in str(parameter.annotation)


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value or [])


def _listener(original):
    signature = inspect.signature(original)

    @functools.wraps(original)
    def trigger(*args, **kwargs):
        if not _compat_active():
            return original(*args, **kwargs)
        dependency = original(*args, **gradio3_event_kwargs(signature, kwargs))
        return _compat_dependency(dependency)

    return trigger


def gradio3_event_kwargs(signature: inspect.Signature, kwargs: dict) -> dict:
    """An event listener's Gradio 3 keywords (`_js`, `_preprocess`, ...) in today's terms."""
    kwargs = dict(kwargs)
    for old, new in (("_js", "js"), ("_preprocess", "preprocess"), ("_postprocess", "postprocess")):
        if old in kwargs:
            kwargs.setdefault(new, kwargs.pop(old))
            kwargs.pop(old, None)
    for key in [k for k in kwargs if k not in signature.parameters]:
        _warn("event listener", key)
        del kwargs[key]
    return kwargs


def _compat_dependency(dependency):
    """`.then(_js=...)` and friends on what a listener returned."""
    if isinstance(dependency, Dependency):
        for name in ("then", "success", "failure"):
            chained = getattr(dependency, name, None)
            if chained is not None:
                setattr(dependency, name, _chained(chained))
    return dependency


def _chained(listener):
    signature = inspect.signature(listener)

    def chained(*args, **kwargs):
        return _compat_dependency(listener(*args, **gradio3_event_kwargs(signature, kwargs)))

    return chained
