"""The WebUI's one interrogator, for the UI and the API alike: its models under the data dir's models folder,
on the generation device (unless `--use-cpu interrogate`), with the interrogate settings of the options."""

from __future__ import annotations

import threading

from PIL import Image

from ..devices import choose_devices
from .interrogator import InterrogateSettings, Interrogator

_creating = threading.Lock()


def state_interrogator(state) -> Interrogator:
    """state.interrogator, made on first use."""
    with _creating:
        if state.interrogator is None:
            flags = state.flags
            use_cpu = [name.lower() for name in (getattr(flags, "use_cpu", None) or [])]
            # A1111's device_interrogate: the CPU with `--use-cpu interrogate` or `all`, whatever the model uses.
            devices = choose_devices(["all"] if {"all", "interrogate"} & set(use_cpu) else [],
                                     getattr(flags, "precision", "autocast"), getattr(flags, "no_half", False))
            state.interrogator = Interrogator(flags.models_dir, devices.device, devices.dtype)
        return state.interrogator


def interrogate_image(state, image: Image.Image) -> str:
    """Interrogate CLIP's text for `image`; InterrogateError (models missing or unreadable) says what to do."""
    return state_interrogator(state).interrogate(image, InterrogateSettings.from_options(state.options))
