"""The worker side of a Ray worker: one process with its own loaded model, running typed jobs.

A `WorkOrder` carries everything the worker needs: the kind, the validated params (with saving off:
the front process saves every image, see ray_pool.py), the checkpoint's name and hash, the VAE choice.
Checkpoints, LoRAs, embeddings and VAEs are read from the models folder of the flags the worker was
started with, which must be the same path on every node. Progress is kept for the front to poll;
interrupt and skip set the running job's cooperative flags, checked at every sampling step.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..generation.batches import ModelUsed, Processed
from ..generation.denoiser import Interrupted, JobControl
from ..generation.params import ParamsError


@dataclass
class WorkOrder:
    job_id: str
    kind: str  # "txt2img" or "img2img"
    params: Any  # Txt2ImgParams / Img2ImgParams, validated by the front, save_images off
    checkpoint: str  # the name asked for ("" : whatever is loaded, else the default)
    checkpoint_hash: str | None  # the front's sha256 of it, when known: a different file on this node is refused
    vae: str | None


class GenerationActor:
    """Wrapped by `ray.remote` in ray_pool.py; a plain class here, so that it can be used without Ray too."""

    def __init__(self, flags, worker_id: str, threads: int | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # offline, as the front is
        import torch

        from ..options import Options
        from ..state import ModelManager, SharedState

        if threads:
            torch.set_num_threads(threads)
        self.id = worker_id
        # The worker's own options are the defaults: everything a job depends on comes in its WorkOrder.
        options = Options(Path(tempfile.mkdtemp(prefix="webui-worker-")) / "config.json")
        self.state = SharedState(flags, options, ModelManager(flags, options))
        self._lock = threading.Lock()
        self._control: JobControl | None = None
        self._job_id: str | None = None
        self._interrupted: set[str] = set()  # jobs interrupted before (or while) they reached this worker
        self._progress = (0, 1, 0, 0)  # (batch, batches, step, steps)
        self._preview = None
        self._preview_id = 0

    # -- asked by the front while a job runs (a threaded actor answers these beside `run`) -------
    def describe(self) -> dict:
        import torch

        device = self.state.models.slot.device
        name = str(device)
        if device.type == "cuda":
            name = f"{name} {torch.cuda.get_device_name(device)}"
        return {"device": f"{socket.gethostname()} {name}", "pid": os.getpid()}

    def poll(self, known_preview: int) -> tuple:
        """(progress, the newest preview when it is not the one the front has, its id)."""
        with self._lock:
            preview = self._preview if self._preview_id != known_preview else None
            return self._progress, preview, self._preview_id

    def interrupt(self, job_id: str) -> None:
        with self._lock:
            self._interrupted.add(job_id)
            if self._job_id == job_id and self._control is not None:
                self._control.interrupted = True

    def skip(self, job_id: str) -> None:
        with self._lock:
            if self._job_id == job_id and self._control is not None:
                self._control.skipped = True

    # -- the job -----------------------------------------------------------------------------
    def run(self, order: WorkOrder) -> dict:
        with self._lock:
            self._control = control = JobControl(interrupted=order.job_id in self._interrupted,
                                                 on_step=self._on_step, on_batch=self._on_batch)
            self._job_id, self._progress = order.job_id, (0, order.params.n_iter, 0, 0)
            self._preview, self._preview_id = None, 0
        result = Processed()
        reply = {"status": "done", "error": None, "bad_input": False, "result": result}
        try:
            model = self._load(order)
        except Exception as error:
            return {**reply, "status": "failed", "error": f"could not load the model: {error}"}
        reply.update(self._loaded())
        try:
            self._generate(order, model, control, result)
            reply["status"] = "interrupted" if control.interrupted else "done"
        except Interrupted:
            reply["status"] = "interrupted"
        except ParamsError as error:
            reply.update(status="failed", error=str(error), bad_input=True)
        except Exception as error:
            reply.update(status="interrupted" if control.interrupted else "failed",
                         error=None if control.interrupted else f"{type(error).__name__}: {error}")
        finally:
            with self._lock:
                self._control = self._job_id = None
                self._interrupted.discard(order.job_id)
        return reply

    def _load(self, order: WorkOrder):
        models = self.state.models
        model = models.switch(order.checkpoint) if order.checkpoint else models.current()
        if order.checkpoint_hash and model.sha256 and model.sha256 != order.checkpoint_hash:
            raise ValueError(f"{order.checkpoint} on worker {self.id} ({socket.gethostname()}) is not the file the "
                             "server has (its hash differs): every node needs the same models folder")
        return model

    def _loaded(self) -> dict:
        model = self.state.models.slot.model
        titles = (info.title for info in self.state.models.checkpoints() if info.path == model.path)
        return {"model": next(titles, Path(model.name).stem), "model_path": str(model.path)}

    def _generate(self, order: WorkOrder, model, control: JobControl, result: Processed) -> None:
        from ..generation.img2img import img2img
        from ..generation.processing import txt2img
        from ..models.model import SDModel
        from ..models.vae import VaeNotFound, apply_vae_setting
        from ..networks import library_for_flags
        from ..networks.embeddings import database_for

        ti = {}
        if isinstance(model, SDModel):
            try:
                apply_vae_setting(self.state, model, order.vae or "Automatic")
            except VaeNotFound as error:
                raise ParamsError(str(error)) from None
            result.model = ModelUsed.of(model)
            embeddings = database_for(self.state).for_model(model)
            ti = {"embeddings": embeddings} if embeddings is not None and embeddings.loaded else {}
        engine = txt2img if order.kind == "txt2img" else img2img
        outputs = Path(self.state.flags.data_dir) / "outputs"  # not written: saving is off, the front saves
        engine(model, order.params, control, outputs, networks=library_for_flags(self.state.flags),
               result=result, **ti)

    def _on_batch(self, batch: int, batches: int | None = None) -> None:
        with self._lock:
            self._progress = (batch, batches or self._progress[1], 0, self._progress[3])

    def _on_step(self, info: dict) -> None:
        preview = None
        if info.get("preview") is not None:
            try:
                preview = info["preview"]()
            except Exception:  # a preview is a nicety; it never fails the job
                preview = None
        with self._lock:
            batch, batches = self._progress[:2]
            self._progress = (batch, batches, info["step"], info["steps"])
            if preview is not None:
                self._preview, self._preview_id = preview, self._preview_id + 1
