"""Extension scripts in the UI: their controls in the generation tabs, the components every
extension is told about while the page is built, and extensions' own top-level tabs.

- `ComponentHooks` reports each Gradio block created while the UI is built to the global
  before_component/after_component callbacks and, inside txt2img or img2img, to that tab's
  scripts, with the constructor's arguments (`elem_id` ...), as A1111 does. It works through
  `gradio_compat.observe_components`: constructors are wrapped only while our UI is built,
  on the building thread, and restored afterwards, rather than patched for the whole process.
- `script_ui` lays out a tab's ScriptRunner at A1111's place, the end of the settings column
  (`<tab>_script_container`): always-on scripts, then the "Script" dropdown (`script_list`),
  each selectable script's controls visible only while it is chosen.
- `extension_tabs` adds the tabs that on_ui_tabs callbacks return (`tab_<id>`).
"""

from __future__ import annotations

import html
import logging
from contextlib import contextmanager
from dataclasses import dataclass

import gradio as gr

from ..state import SharedState
from . import gradio_compat

log = logging.getLogger(__name__)


class ComponentHooks:
    """A1111's before_component/after_component, for one UI build."""

    def __init__(self, state: SharedState):
        self.state = state
        self.runner = None  # the ScriptRunner of the tab being built

    @contextmanager
    def active(self):
        with gradio_compat.observe_components(self._report):
            yield self

    @contextmanager
    def tab(self, runner):
        previous, self.runner = self.runner, runner
        try:
            yield
        finally:
            self.runner = previous

    def _report(self, phase: str, component, kwargs: dict) -> None:
        with gradio_compat.extension_ui():  # extension code; its own components are reported too
            if phase == "after":
                self.state.callbacks.run("after_component", component, **kwargs)
            self._tell_scripts(phase, component, kwargs)
            if phase == "before":
                self.state.callbacks.run("before_component", component, **kwargs)

    def _tell_scripts(self, phase: str, component, kwargs: dict) -> None:
        if self.runner is not None:  # the runner calls each script's hook and elem_id callbacks
            getattr(self.runner, f"{phase}_component")(component, **kwargs)


@dataclass
class ScriptUI:
    """A tab's script controls: their values, in the runner's order, become `script_args`."""

    runner: object
    inputs: list  # the runner's inputs (index 0: the "Script" dropdown)

    def components(self) -> set:
        return {c for c in self.inputs if isinstance(c, gr.components.Component)}

    def values(self, data: dict) -> list:
        return [data.get(c) if isinstance(c, gr.components.Component) else None for c in self.inputs]


def script_ui(state: SharedState, tab: str) -> ScriptUI | None:
    """The tab's scripts' controls, where A1111 puts them; None when no scripts are loaded."""
    runner = state.runners.get(tab)
    if runner is None:
        return None
    with gr.Column(elem_id=f"{tab}_script_container"):
        with gradio_compat.extension_ui():
            inputs = list(runner.setup_ui())
    # A selectable script's controls sit in its gr.Group (none when create_group is False).
    groups = [(number, script.group) for number, script in enumerate(runner.selectable_scripts, start=1)
              if script.group is not None]
    if runner.dropdown is not None and groups:
        def choose(index):
            return [gr.update(visible=number == (index or 0)) for number, _ in groups]

        runner.dropdown.change(choose, runner.dropdown, [group for _, group in groups], show_progress="hidden")
    return ScriptUI(runner, inputs)


def paste_into(controls, state: SharedState, scripts: ScriptUI | None) -> None:
    """Pasted infotext also fills the scripts' `infotext_fields` and runs on_infotext_pasted."""
    controls.callbacks = state.callbacks
    if scripts is not None:
        controls.script_fields = [(c, key) for c, key in scripts.runner.infotext_fields
                                  if isinstance(c, gr.components.Component)]


def extension_tabs(state: SharedState) -> list[tuple]:
    """Run on_ui_tabs: [(blocks, title, elem_id)] from every extension that adds a tab."""
    tabs = []
    with gradio_compat.extension_ui():
        for result in state.callbacks.run("ui_tabs"):
            for entry in result or []:
                try:
                    blocks, title, elem_id = entry[:3]
                except (TypeError, ValueError):
                    log.error("an on_ui_tabs callback returned %r, not (blocks, title, elem_id)", entry)
                    continue
                tabs.append((blocks, str(title), str(elem_id)))
    return tabs


def render_extension_tabs(tabs: list[tuple]) -> None:
    """The tabs from `extension_tabs`, inside the page's gr.Tabs."""
    for blocks, title, elem_id in tabs:
        with gr.Tab(title, id=elem_id, elem_id=f"tab_{elem_id}"):
            try:
                with gradio_compat.extension_ui():
                    blocks.render()
            except Exception as error:  # the page goes on without that extension's tab content
                log.exception("the %r tab of an extension could not be shown", title)
                gr.HTML(f'<div class="error">This tab failed: {html.escape(f"{type(error).__name__}: {error}")}</div>')

