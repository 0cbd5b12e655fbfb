"""The per-tab ScriptRunner: each registered Script class instantiated once, its UI inputs built,
and its hooks called with its own slice of the script arguments (see scripts.py)."""

from __future__ import annotations

import logging
import threading

from .scripts import AlwaysVisible, OnComponent, Script, ScriptClass, ScriptRegistry

log = logging.getLogger(__name__)


class ScriptRunner:
    """The scripts of one tab: each registered class instantiated once, sorted by `show()`."""

    def __init__(self, registry: ScriptRegistry, is_img2img: bool):
        self.is_img2img = is_img2img
        self.tabname = "img2img" if is_img2img else "txt2img"
        self.scripts: list[Script] = []  # always-on, then selectable, in load order within each
        self.alwayson_scripts: list[Script] = []
        self.selectable_scripts: list[Script] = []
        self.inputs: list = []  # the components, in args order; empty until setup_ui
        self.dropdown = None  # the "Script" dropdown (inputs[0]) once setup_ui ran
        self.infotext_fields: list = []
        self.paste_field_names: list = []
        self.errors: list[tuple[str, str, str]] = []  # (script file, hook, message)
        for entry in registry.classes:
            self._instantiate(entry)
        self.scripts = self.alwayson_scripts + self.selectable_scripts

    def _instantiate(self, entry: ScriptClass) -> None:
        try:
            script = entry.cls()
            script.filename = str(entry.path)
            script.is_txt2img, script.is_img2img = not self.is_img2img, self.is_img2img
            script.tabname = self.tabname
            visibility = script.show(self.is_img2img)
            script.name = str(script.title()).lower()
        except Exception as error:  # one broken script class must not take the tab down
            self._report(str(entry.path), "init", error)
            return
        if visibility is AlwaysVisible:
            script.alwayson = True
            self.alwayson_scripts.append(script)
        elif visibility:
            self.selectable_scripts.append(script)


    # -- UI: the inputs whose values become the scripts' arguments --------------------------------
    def setup_ui(self) -> list:
        """Build every script's ui() (inside the current gr.Blocks) and the "Script" dropdown.

        inputs[0] is the dropdown (type index: 0 = None); then the always-on scripts' components,
        then the selectable scripts', each script's in `args_from:args_to`. Selectable scripts'
        groups start hidden; the tab shows the chosen one.
        """
        import gradio as gr

        self.inputs = [None]
        self.infotext_fields, self.paste_field_names = [], []
        for script in self.alwayson_scripts:
            self._create_script_ui(script, gr)
        self.dropdown = gr.Dropdown(label="Script", elem_id="script_list", choices=["None"] + [s.title() for s in self.selectable_scripts], value="None",
                                    type="index")
        self.inputs[0] = self.dropdown
        for script in self.selectable_scripts:
            self._create_script_ui(script, gr)
        return self.inputs

    def _create_script_ui(self, script: Script, gr) -> None:
        script.args_from = script.args_to = len(self.inputs)
        try:
            if script.create_group:
                with gr.Group(visible=script.alwayson) as group:
                    controls = script.ui(self.is_img2img)
                script.group = group
            else:
                controls = script.ui(self.is_img2img)
        except Exception as error:  # a broken ui() costs that script its inputs, nothing more
            self._report(script.filename, "ui", error)
            controls = None
        script.controls = list(controls) if controls else []
        self.inputs += script.controls
        script.args_to = len(self.inputs)
        script.api_info = _api_info(script)
        if script.infotext_fields:
            self.infotext_fields += list(script.infotext_fields)
        if script.paste_field_names:
            self.paste_field_names += list(script.paste_field_names)

    def ensure_inputs(self) -> None:
        """Without a UI (API only), build the inputs in a throwaway gr.Blocks for their defaults."""
        with _setup_lock:
            if self.inputs:
                return
            import gradio as gr

            with gr.Blocks():
                self.setup_ui()

    def default_args(self) -> list:
        """The value of every input as the UI starts, in args order (what an API call starts from)."""
        self.ensure_inputs()
        return [0] + [_default_value(component) for component in self.inputs[1:]]

    def script_info(self) -> list[dict]:
        self.ensure_inputs()
        return [script.api_info for script in self.scripts if script.api_info is not None]

    def find(self, title: str) -> Script | None:
        wanted = title.strip().lower()
        return next((s for s in self.scripts if (s.name or "").lower() == wanted), None)

    def selectable_index(self, script: Script) -> int:
        """The dropdown value that chooses `script` (1-based; 0 is None)."""
        return self.selectable_scripts.index(script) + 1

    # -- component hooks (called by the gradio layer for every component the tab creates) ----------
    def before_component(self, component, **kwargs) -> None:
        self._component_hook("before_component", "on_before_component_elem_id", component, kwargs)

    def after_component(self, component, **kwargs) -> None:
        self._component_hook("after_component", "on_after_component_elem_id", component, kwargs)

    def _component_hook(self, method: str, elem_hooks: str, component, kwargs: dict) -> None:
        elem_id = kwargs.get("elem_id")
        for script in self.scripts:
            try:
                getattr(script, method)(component, **kwargs)
                for wanted, callback in getattr(script, elem_hooks) or ():
                    if wanted == elem_id:
                        callback(OnComponent(component=component))
            except Exception as error:
                self._report(script.filename, method, error)

    # -- processing hooks: always-on scripts, each with its own slice of p.script_args -------------
    def _each(self, hook: str, p, call) -> None:
        for script in self.alwayson_scripts:
            args = _script_args(p, script)
            try:
                call(script, args)
            except Exception as error:  # logged and reported; generation goes on
                self._report(script.filename, hook, error)

    def run_setup(self, p, *, is_ui: bool = True) -> None:
        self._each("setup", p, lambda s, a: None if (s.setup_for_ui_only and not is_ui) else s.setup(p, *a))

    def run_before_process(self, p) -> None:
        self._each("before_process", p, lambda s, a: s.before_process(p, *a))

    def run_process(self, p) -> None:
        self._each("process", p, lambda s, a: s.process(p, *a))

    def run_before_process_batch(self, p, **kwargs) -> None:
        self._each("before_process_batch", p, lambda s, a: s.before_process_batch(p, *a, **kwargs))

    def run_after_extra_networks_activate(self, p, **kwargs) -> None:
        self._each("after_extra_networks_activate", p, lambda s, a: s.after_extra_networks_activate(p, *a, **kwargs))

    def run_process_batch(self, p, **kwargs) -> None:
        self._each("process_batch", p, lambda s, a: s.process_batch(p, *a, **kwargs))

    def run_process_before_every_sampling(self, p, **kwargs) -> None:
        self._each("process_before_every_sampling", p, lambda s, a: s.process_before_every_sampling(p, *a, **kwargs))

    def run_before_hr(self, p) -> None:
        self._each("before_hr", p, lambda s, a: s.before_hr(p, *a))

    def run_post_sample(self, p, ps) -> None:
        self._each("post_sample", p, lambda s, a: s.post_sample(p, ps, *a))

    def run_postprocess_batch(self, p, images, **kwargs) -> None:
        self._each("postprocess_batch", p, lambda s, a: s.postprocess_batch(p, *a, images=images, **kwargs))

    def run_postprocess_batch_list(self, p, pp, **kwargs) -> None:
        self._each("postprocess_batch_list", p, lambda s, a: s.postprocess_batch_list(p, pp, *a, **kwargs))

    def run_postprocess_image(self, p, pp) -> None:
        self._each("postprocess_image", p, lambda s, a: s.postprocess_image(p, pp, *a))

    def run_postprocess_image_after_composite(self, p, pp) -> None:
        self._each("postprocess_image_after_composite", p,
                   lambda s, a: s.postprocess_image_after_composite(p, pp, *a))

    def run_postprocess(self, p, processed) -> None:
        self._each("postprocess", p, lambda s, a: s.postprocess(p, processed, *a))

    def run(self, p, *script_args):
        """The selected script's run(p, *its args), or None when none is selected (index 0)."""
        index = script_args[0] if script_args else 0
        if not index:
            return None
        script = self.selectable_scripts[int(index) - 1]
        return script.run(p, *script_args[script.args_from:script.args_to])

    def _report(self, filename: str | None, hook: str, error: BaseException) -> None:
        log.error("error running %s of script %s: %s", hook, filename, error, exc_info=error)
        self.errors.append((filename or "?", hook, f"{type(error).__name__}: {error}"))


_setup_lock = threading.RLock()  # API-only runners build their inputs once


def _script_args(p, script: Script) -> list:
    args = list(getattr(p, "script_args", None) or ())
    return args[script.args_from:script.args_to] if script.args_from is not None else []


def _choices(component) -> list | None:
    choices = getattr(component, "choices", None)
    if callable(choices):
        choices = choices()
    if choices is None:
        return None
    # Gradio 4+ keeps (label, value) pairs; A1111's API lists the labels.
    return [c[0] if isinstance(c, (tuple, list)) else c for c in choices]


def _default_value(component):
    """A component's starting value as the script receives it (an index for type="index" choices)."""
    value = getattr(component, "value", None)
    if getattr(component, "type", None) == "index" and hasattr(component, "choices"):
        values = [c[1] if isinstance(c, (tuple, list)) else c for c in getattr(component, "choices") or ()]
        return values.index(value) if value in values else None
    return value


def _api_info(script: Script) -> dict:
    """/sdapi/v1/script-info's entry for a script, from its components (A1111's ScriptInfo shape)."""
    args = []
    for component in script.controls or ():
        args.append({"label": getattr(component, "label", None) or "", "value": _default_value(component),
                     "minimum": getattr(component, "minimum", None), "maximum": getattr(component, "maximum", None),
                     "step": getattr(component, "step", None), "choices": _choices(component)})
    return {"name": script.name, "is_alwayson": script.alwayson, "is_img2img": script.is_img2img, "args": args}


def create_runners(state) -> dict:
    """One ScriptRunner per tab from state.scripts, stored in state.runners (after loading scripts)."""
    state.runners = {"txt2img": ScriptRunner(state.scripts, False), "img2img": ScriptRunner(state.scripts, True)}
    return state.runners
