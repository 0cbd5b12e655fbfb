"""A1111's `modules.sd_vae`: the VAE files."""

from __future__ import annotations

from webui import compat

unspecified = object()


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    if name == "vae_dict":
        from webui.models.vae import state_vaes

        return {vae.name: str(vae.path) for vae in state_vaes(compat.state())}
    if name == "loaded_vae_file":
        slot = getattr(compat.state().models, "slot", None)
        vae = getattr(slot.model, "vae_file", None) if slot is not None and slot.model is not None else None
        return str(vae) if vae else None
    raise compat.missing(__name__, name)


def refresh_vae_list() -> None:
    pass
