"""A1111's `modules.shared_items`: lists for settings dropdowns."""

from __future__ import annotations

from webui import compat


def sd_vae_items() -> list[str]:
    from webui.models.vae import state_vaes

    return ["Automatic", "None", *(vae.name for vae in state_vaes(compat.state()))]


def refresh_vae_list() -> None:
    pass


def list_checkpoint_tiles(use_short=False) -> list[str]:
    from .sd_models import checkpoint_tiles

    return checkpoint_tiles(use_short)


def refresh_checkpoints() -> None:
    compat.state().models.refresh()


def sd_unet_items() -> list[str]:
    return ["Automatic", "None"]


__getattr__ = compat.report_missing_names(__name__)
