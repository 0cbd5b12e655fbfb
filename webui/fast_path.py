"""The compiled fast path (--compile): torch.compile of the UNet/transformer's forward, with CUDA graphs on a
GPU, static shapes per (size, batch).

At batch 1 a UNet step is bound by kernel launches (about 2,200 ops per SD1.5 forward), so the win is in
capturing the whole step, which needs shapes that do not change. What changes between calls is passed in as
inputs (latents, timesteps, text embeddings, SDXL's size ids), never baked in as constants, so a prompt
edit at step N, a new seed or the next job of the same size replays what was compiled. A call with fewer
rows than the widest batch compiled for its size (CFG's uncond pass skipped near the end, see
denoiser.py) is padded up to that batch rather than compiled again. The first call of a new shape says
that it is compiling, in the log and through `notify` (the job's progress text).

The compiled function replaces the network's `forward` on the instance only: `model.unet` stays the same
object (its config, LoRA patches, the memory placement's hooks on it) and `remove` restores it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


def _batch_tensors(value, batch: int, fix: Callable):
    """`value` (a tensor, or a dict of them as SDXL's added_cond_kwargs) with `fix` applied to each tensor
    whose first dimension is the batch."""
    if isinstance(value, torch.Tensor):
        return fix(value) if value.ndim and value.shape[0] == batch else value
    if isinstance(value, dict):
        return {k: _batch_tensors(v, batch, fix) for k, v in value.items()}
    return value


def _shapes(value) -> tuple:
    if isinstance(value, torch.Tensor):
        return (tuple(value.shape), value.dtype)
    if isinstance(value, dict):
        return tuple((k, _shapes(v)) for k, v in sorted(value.items()))
    return (type(value).__name__,)


class CompiledNetwork:
    """The network's forward, compiled (see the module doc)."""

    def __init__(self, network: torch.nn.Module, device: torch.device, *, cuda_graphs: bool | None = None,
                 channels_last: bool | None = None, backend: str = "inductor"):
        self.network = network
        device = torch.device(device)
        self.cuda_graphs = device.type == "cuda" if cuda_graphs is None else cuda_graphs
        # Convolutions (the UNet) run faster channels-last on tensor cores; transformers have none to speak of.
        if channels_last if channels_last is not None else device.type == "cuda" and _has_conv2d(network):
            network.to(memory_format=torch.channels_last)
        self._eager = network.forward
        self._compiled = torch.compile(self._eager, dynamic=False, backend=backend,
                                       mode="reduce-overhead" if self.cuda_graphs and backend == "inductor" else None)
        self.widest: dict[tuple, int] = {}  # input shape without the batch -> the widest batch compiled
        self.compiled_shapes: set[tuple] = set()
        self.notify: Callable[[str], None] | None = None  # the current job's progress text, when one listens
        network.forward = self

    def __call__(self, *args, **kwargs):
        first = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        batch = first.shape[0]
        size_key = (tuple(first.shape[1:]), first.dtype)
        widest = max(self.widest.get(size_key, 0), batch)
        self.widest[size_key] = widest
        if batch < widest:  # pad by repeating the last row: the shapes (and graphs) stay those compiled
            def pad(t):
                return torch.cat([t, t[-1:].expand(widest - batch, *t.shape[1:])])

            args = tuple(_batch_tensors(a, batch, pad) for a in args)
            kwargs = {k: _batch_tensors(v, batch, pad) for k, v in kwargs.items()}
        shape = (tuple(_shapes(a) for a in args), tuple((k, _shapes(v)) for k, v in sorted(kwargs.items())))
        if shape not in self.compiled_shapes:
            self.compiled_shapes.add(shape)
            text = (f"compiling the {type(self.network).__name__} for latents {list(first.shape[1:])}, batch "
                    f"{widest} (first run at this size; later runs reuse it)")
            log.info(text)
            if self.notify is not None:
                self.notify(text)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self._compiled(*args, **kwargs)
        # A CUDA graph's outputs are overwritten by its next replay: copy them out (and drop padded rows).
        return _take(out, batch, copy=self.cuda_graphs)

    def remove(self) -> None:
        """The eager forward again."""
        if self.network.__dict__.get("forward") is self:
            del self.network.forward


def _take(out, batch: int, copy: bool):
    def fix(t):
        t = t[:batch] if t.ndim and t.shape[0] >= batch else t
        return t.clone() if copy else t

    if isinstance(out, torch.Tensor):
        return fix(out)
    if isinstance(out, tuple):
        return tuple(fix(t) if isinstance(t, torch.Tensor) else t for t in out)
    if hasattr(out, "sample"):
        out.sample = fix(out.sample)
    return out


def _has_conv2d(network: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in network.modules())


def enable(model, backend: str = "inductor") -> CompiledNetwork:
    """Compile `model.unet` (idempotent). `backend`: torch.compile's (tests use a quick one)."""
    if model.fast_path is None:
        model.fast_path = CompiledNetwork(model.unet, model.device, backend=backend)
        log.info("--compile: the %s runs compiled%s", type(model.unet).__name__,
                 " with CUDA graphs" if model.fast_path.cuda_graphs else "")
    return model.fast_path


def disable(model) -> None:
    if model.fast_path is not None:
        model.fast_path.remove()
        model.fast_path = None
