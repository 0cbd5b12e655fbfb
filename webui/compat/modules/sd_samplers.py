"""A1111's `modules.sd_samplers`: the sampler list (names, aliases, options) as A1111 shapes it."""

from __future__ import annotations

from collections import namedtuple

from webui import compat
from webui.generation.samplers import SAMPLERS

SamplerData = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])

all_samplers = [SamplerData(s.name, None, list(s.aliases), dict(s.options)) for s in SAMPLERS]
all_samplers_map = {s.name: s for s in all_samplers}
samplers = list(all_samplers)
samplers_for_img2img = list(all_samplers)
samplers_map = {alias.lower(): s.name for s in all_samplers for alias in [s.name, *s.aliases]}


def visible_sampler_names() -> list[str]:
    return [s.name for s in samplers]


def find_sampler_config(name):
    if name is None:
        return all_samplers[0]
    return all_samplers_map.get(name) or all_samplers_map.get(samplers_map.get(str(name).lower(), ""))


def get_sampler_from_infotext(d: dict):
    return get_sampler_and_scheduler(d.get("Sampler"), d.get("Schedule type"))[0]


def get_sampler_and_scheduler(sampler_name, scheduler_name, *, convert_automatic=True):
    from webui.generation.samplers import split_sampler_name

    label, from_name = split_sampler_name(sampler_name or all_samplers[0].name)
    config = find_sampler_config(label)
    return (config.name if config else all_samplers[0].name), (from_name or scheduler_name or "Automatic")


def set_samplers() -> None:
    pass


__getattr__ = compat.report_missing_names(__name__)
