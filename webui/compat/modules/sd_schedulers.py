"""A1111's `modules.sd_schedulers`: the "Schedule type" list."""

from webui import compat
from webui.generation.samplers import SCHEDULERS

schedulers = list(SCHEDULERS)
schedulers_map = {**{s.name: s for s in schedulers}, **{s.label: s for s in schedulers}}


__getattr__ = compat.report_missing_names(__name__)
