"""A1111's `modules.script_callbacks`: `on_*` registrars over the bound state's CallbackRegistry."""

from __future__ import annotations

from webui import compat
from webui.extensions.callbacks import (  # noqa: F401  (A1111's parameter classes)
    CATEGORIES, AfterCFGCallbackParams, BeforeTokenCounterParams, CFGDenoisedParams, CFGDenoiserParams,
    ExtraNoiseParams, ImageGridLoopParams, ImageSaveParams, UiTrainTabParams, current_owner,
)


def _registry():
    return compat.state().callbacks


def _add(category: str, callback, name=None) -> None:
    _registry().add(category, callback, name=name)


def on_app_started(callback, *, name=None): _add("app_started", callback, name)
def on_before_reload(callback, *, name=None): _add("before_reload", callback, name)
def on_model_loaded(callback, *, name=None): _add("model_loaded", callback, name)
def on_ui_tabs(callback, *, name=None): _add("ui_tabs", callback, name)
def on_ui_train_tabs(callback, *, name=None): _add("ui_train_tabs", callback, name)
def on_ui_settings(callback, *, name=None): _add("ui_settings", callback, name)
def on_before_image_saved(callback, *, name=None): _add("before_image_saved", callback, name)
def on_image_saved(callback, *, name=None): _add("image_saved", callback, name)
def on_extra_noise(callback, *, name=None): _add("extra_noise", callback, name)
def on_cfg_denoiser(callback, *, name=None): _add("cfg_denoiser", callback, name)
def on_cfg_denoised(callback, *, name=None): _add("cfg_denoised", callback, name)
def on_cfg_after_cfg(callback, *, name=None): _add("cfg_after_cfg", callback, name)
def on_before_component(callback, *, name=None): _add("before_component", callback, name)
def on_after_component(callback, *, name=None): _add("after_component", callback, name)
def on_image_grid(callback, *, name=None): _add("image_grid", callback, name)
def on_infotext_pasted(callback, *, name=None): _add("infotext_pasted", callback, name)
def on_script_unloaded(callback, *, name=None): _add("script_unloaded", callback, name)
def on_before_ui(callback, *, name=None): _add("before_ui", callback, name)
def on_list_optimizers(callback, *, name=None): _add("list_optimizers", callback, name)
def on_list_unets(callback, *, name=None): _add("list_unets", callback, name)
def on_before_token_counter(callback, *, name=None): _add("before_token_counter", callback, name)


def remove_current_script_callbacks() -> None:
    """Drop every callback the script file being imported registered (A1111: on reload)."""
    owner = current_owner()
    if owner is not None:
        _registry().remove_owner(owner)


def remove_callbacks_for_function(callback_func) -> None:
    _registry().remove_function(callback_func)


def clear_callbacks() -> None:
    _registry().clear()


# -- A1111's runners, for code that fires a callback itself ----------------------------------------

def app_started_callback(demo, app): _registry().run("app_started", demo, app)
def before_reload_callback(): _registry().run("before_reload")
def model_loaded_callback(sd_model): _registry().run("model_loaded", sd_model)
def ui_settings_callback(): _registry().run("ui_settings")
def before_image_saved_callback(params): _registry().run("before_image_saved", params)
def image_saved_callback(params): _registry().run("image_saved", params)
def extra_noise_callback(params): _registry().run("extra_noise", params)
def cfg_denoiser_callback(params): _registry().run("cfg_denoiser", params)
def cfg_denoised_callback(params): _registry().run("cfg_denoised", params)
def cfg_after_cfg_callback(params): _registry().run("cfg_after_cfg", params)
def before_component_callback(component, **kwargs): _registry().run("before_component", component, **kwargs)
def after_component_callback(component, **kwargs): _registry().run("after_component", component, **kwargs)
def image_grid_callback(params): _registry().run("image_grid", params)
def infotext_pasted_callback(infotext, params): _registry().run("infotext_pasted", infotext, params)
def script_unloaded_callback(): _registry().run("script_unloaded")
def before_ui_callback(): _registry().run("before_ui")
def before_token_counter_callback(params): _registry().run("before_token_counter", params)


def ui_tabs_callback() -> list:
    """Every (gr.Blocks, title, elem_id) the on_ui_tabs callbacks returned, in order."""
    return [tab for tabs in _registry().run("ui_tabs") for tab in (tabs or [])]


def ui_train_tabs_callback(params) -> None:
    _registry().run("ui_train_tabs", params)


def list_optimizers_callback() -> list:
    found: list = []
    _registry().run("list_optimizers", found)
    return found


def list_unets_callback() -> list:
    found: list = []
    _registry().run("list_unets", found)
    return found


__getattr__ = compat.report_missing_names(__name__)
