"""A1111's `modules.sd_models`: the checkpoint list and switching, over our ModelManager."""

from __future__ import annotations

from webui import compat
from webui.models.discovery import CheckpointInfo  # noqa: F401

model_dir = "Stable-diffusion"


def _models():
    return compat.state().models


def list_models() -> None:
    _models().refresh()


def checkpoint_tiles(use_short=False) -> list[str]:
    return [c.title for c in _models().checkpoints()]


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    if name == "checkpoints_list":
        return {c.title: c for c in _models().checkpoints()}
    if name == "checkpoint_aliases":
        return {alias: c for c in _models().checkpoints() for alias in c.aliases()}
    if name == "model_path":
        return str(_models().models_dir)
    raise compat.missing(__name__, name)


def get_closet_checkpoint_match(search_string):
    try:
        return _models().find(search_string)
    except LookupError:
        return None


def select_checkpoint():
    return _models().find(compat.state().options["sd_model_checkpoint"] or None)


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    name = info.title if info is not None else compat.state().options["sd_model_checkpoint"]
    return _models().switch(name) if name else _models().current()


def model_hash(filename) -> str:
    from .hashes import sha256

    return sha256(filename)[:8]
