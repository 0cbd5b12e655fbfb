"""The read-mostly endpoints: settings, flags, and the lists a client fills its menus from.

Scripts and extensions are listed from what was loaded (webui/extensions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from fastapi import HTTPException
from fastapi.responses import JSONResponse

from ..a1111_options import API_RESTRICTED
from ..flags import SECRET_FLAGS
from ..generation.samplers import SAMPLERS, SCHEDULERS
from ..generation.upscalers import LATENT_UPSCALE_MODES, upscaler_names
from ..options import OptionsError
from ..state import SharedState
from .common import known_checkpoint
from ..styles import load_styles

# Schedules built from the model's own timestep table rather than from sigma_min/max alone.
_NEEDS_MODEL_TABLE = {"sgm_uniform", "simple", "normal", "ddim", "beta"}


def set_options(state: SharedState, changes: Any) -> None:
    if not isinstance(changes, dict):
        raise HTTPException(422, "body: expected a JSON object of settings")
    # A1111 never lets the API change what URLs the API itself may fetch (its restrict_api): left as they are.
    changes = {key: value for key, value in changes.items() if key not in API_RESTRICTED}
    name = changes.get("sd_model_checkpoint")
    if name:  # only a checkpoint from the models folders, never a path elsewhere
        if not isinstance(name, str):
            raise HTTPException(422, "sd_model_checkpoint: expected a string")
        changes = {**changes, "sd_model_checkpoint": known_checkpoint(state, name, "sd_model_checkpoint").title}
    vae = changes.get("sd_vae")
    if isinstance(vae, str) and vae:  # a VAE that does not exist would fail every job: one of /sdapi/v1/sd-vae
        from ..models.vae import VaeNotFound, resolve_vae, state_vaes

        try:
            resolve_vae(vae, None, state_vaes(state))
        except VaeNotFound as error:
            raise HTTPException(400, f"sd_vae: {error}") from None
    try:
        state.options.update(changes)
    except OptionsError as error:
        raise HTTPException(400, str(error)) from None


def scripts_list(state: SharedState) -> dict[str, list[str]]:
    """A1111's /sdapi/v1/scripts: the (lowercased) names of every script on each tab."""
    from ..extensions.processing import runner_for

    return {tab: [s.name for s in runner.scripts if s.name] if (runner := runner_for(state, tab)) else []
            for tab in ("txt2img", "img2img")}


def script_info(state: SharedState) -> list[dict]:
    """A1111's /sdapi/v1/script-info: each script's name, kind and arguments (label, value, range, choices)."""
    from ..extensions.processing import runner_for

    return [entry for tab in ("txt2img", "img2img") if (runner := runner_for(state, tab))
            for entry in runner.script_info()]


def cmd_flags(state: SharedState) -> dict[str, Any]:
    shown = {}
    for key, value in vars(state.flags).items():
        if key in SECRET_FLAGS:
            value = "***" if value else None  # say whether it is set, never what it is
        elif isinstance(value, Path):
            value = str(value)
        shown[key] = value
    return shown


def samplers() -> list[dict]:
    return [{"name": s.name, "aliases": list(s.aliases), "options": {k: str(v) for k, v in s.options}}
            for s in SAMPLERS]


def schedulers() -> list[dict]:
    return [{"name": s.name, "label": s.label, "aliases": list(s.aliases) or None, "default_rho": s.default_rho or -1,
             "need_inner_model": s.name in _NEEDS_MODEL_TABLE} for s in SCHEDULERS]


def sd_models(state: SharedState) -> list[dict]:
    """A1111's fields, plus `family` (ours: "sd1", "sdxl", "flux", ...; null where the file cannot tell)."""
    from ..models.loading import checkpoint_family

    def family(info) -> str | None:
        found = checkpoint_family(info)
        return found.name if found is not None else None

    return [{"title": c.title, "model_name": c.name.replace("/", "_"), "hash": c.short_hash, "sha256": c.sha256,
             "filename": str(c.path), "config": None, "family": family(c)} for c in state.models.checkpoints()]


def loras(state: SharedState) -> list[dict]:
    """A1111's LoRA listing: name (file stem), alias (`ss_output_name`), path and safetensors metadata."""
    from ..networks import library_for_flags

    return [{"name": f.name, "alias": f.alias, "path": str(f.path), "metadata": f.metadata}
            for f in library_for_flags(state.flags).files()]


def refresh_loras(state: SharedState) -> None:
    from ..networks import library_for_flags

    library_for_flags(state.flags).refresh()


def hypernetworks(state: SharedState) -> list[dict]:
    """A1111's hypernetwork listing: the `.pt` files of models/hypernetworks, read again on every request."""
    from ..networks.hypernet_network import hypernetwork_library

    return [{"name": f.name, "path": str(f.path)} for f in hypernetwork_library(state).refresh()]


def upscalers() -> list[dict]:
    # Pixel upscalers only, as A1111 lists them; the latent modes have their own endpoint.
    from ..postprocessing.model_upscalers import model_upscaler_file

    def entry(name: str) -> dict:
        file = model_upscaler_file(name)  # a model file (postprocessing/model_upscalers.py) or a built-in
        return {"name": name, "model_name": file.path.stem if file else None,
                "model_path": str(file.path) if file else None, "model_url": None, "scale": file.scale if file else None}
    return [entry(name) for name in upscaler_names() if name not in LATENT_UPSCALE_MODES]


def latent_upscale_modes() -> list[dict]:
    return [{"name": name} for name in LATENT_UPSCALE_MODES]


# The problems of styles.csv ride in a header: the body keeps A1111's shape (a list of styles).
STYLES_PROBLEMS_HEADER = "X-Styles-Problems"


def prompt_styles(state: SharedState) -> JSONResponse:
    """The styles that could be read; with problems in the file, also the header above holding them
    as a JSON list of strings (ASCII-escaped, as headers must be)."""
    found = load_styles(state)
    headers = {STYLES_PROBLEMS_HEADER: json.dumps(found.problems)} if found.problems else None
    return JSONResponse(list(found.styles.values()), headers=headers)


def _ram() -> tuple[int, int]:
    """(available, total) bytes of system RAM: psutil when installed, else /proc/meminfo."""
    try:
        import psutil
    except ImportError:
        fields = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            fields[key] = int(rest.split()[0]) * 1024
        return fields.get("MemAvailable", fields.get("MemFree", 0)), fields.get("MemTotal", 0)
    ram = psutil.virtual_memory()
    return ram.available, ram.total


def embeddings(state: SharedState) -> dict:
    """A1111's {"loaded": {...}, "skipped": {...}} for the loaded model (every readable file if none is)."""
    from ..networks.embeddings import database_for

    return database_for(state).for_model(state.models.slot.model if hasattr(state.models, "slot") else None).listing()


def refresh_embeddings(state: SharedState) -> None:
    from ..networks.embeddings import database_for

    database_for(state).refresh(force=True)


def sd_vaes(state: SharedState) -> list[dict]:
    from ..models.vae import state_vaes

    return [{"model_name": vae.name, "filename": str(vae.path)} for vae in state_vaes(state)]


def memory() -> dict:
    free, total = _ram()
    result: dict[str, Any] = {"ram": {"free": free, "used": total - free, "total": total}}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        stats = torch.cuda.memory_stats()
        pair = lambda key: {"current": stats.get(f"{key}.all.current", 0), "peak": stats.get(f"{key}.all.peak", 0)}  # noqa: E731
        result["cuda"] = {
            "system": {"free": free, "used": total - free, "total": total},
            "active": pair("active_bytes"), "allocated": pair("allocated_bytes"),
            "reserved": pair("reserved_bytes"), "inactive": pair("inactive_split_bytes"),
            "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
        }
    else:
        result["cuda"] = {"error": "CUDA is not available"}
    return result
