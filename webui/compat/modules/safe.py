"""A1111's `modules.safe`: its loaders of pickled checkpoints. Here every one of them is torch.load with
weights_only=True, `unsafe_torch_load` included: no extension gets to unpickle code through us."""

from __future__ import annotations

import torch

from webui import compat


def load(filename, *args, **kwargs):
    kwargs["weights_only"] = True
    return torch.load(filename, *args, **kwargs)


unsafe_torch_load = load
load_with_extra = load


__getattr__ = compat.report_missing_names(__name__)
