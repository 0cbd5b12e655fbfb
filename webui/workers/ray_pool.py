"""Ray workers, seen from the front process: start or join Ray, one actor per GPU (or N on the CPU), and
`RayWorker`, which runs one queued job on its actor.

The front keeps what it did before: settings and limits are applied and checked here, every image is
saved here with its infotext before the job is reported done (a worker killed mid-job has saved
nothing, so the retried job saves each image once). Jobs that need scripts (A1111's `p`: always-on or
chosen scripts, extension callbacks) stay in this process, on its own model.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time

from ..generation.batches import Processed
from ..generation.images import check_output_folder, dated, save_image
from ..generation.params import Limits, ParamsError
from ..options import OptionsError
from . import Worker, WorkerLost, WorkerSetupError
from .remote import GenerationActor, WorkOrder

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how often a running job's progress and preview are fetched
START_SECONDS = 600  # a worker's first answer (imports, devices) on a loaded machine
INSTALL_HINT = "Ray is not installed: pip install '.[ray]' (or pip install 'ray>=2.60'), then start again"


def start_ray_workers(state, init_options: dict | None = None) -> list["RayWorker"]:
    """--ray: a local Ray instance (or --ray-address's cluster) and one worker per GPU, --workers N on the CPU."""
    try:
        import ray
    except ImportError:
        raise WorkerSetupError(INSTALL_HINT) from None
    flags = state.flags
    if not ray.is_initialized():
        # Local workers import this project like the front does; on a cluster it is installed on every node.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {"env_vars": {"HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p)}}
        if getattr(flags, "ray_address", None):
            ray.init(address=flags.ray_address, runtime_env=env, **(init_options or {}))
        else:
            ray.init(include_dashboard=False, runtime_env=env, **(init_options or {}))
    gpus = 0 if "all" in (flags.use_cpu or []) else int(ray.cluster_resources().get("GPU", 0))
    count = getattr(flags, "workers", None) or gpus or 1
    actor_flags = copy.copy(flags)
    threads = None
    if not gpus:
        actor_flags.use_cpu = ["all"]
        threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // count)  # the cores shared, not fought over
    remote = ray.remote(GenerationActor).options(num_gpus=1 if gpus else 0, num_cpus=0, max_concurrency=4,
                                                 max_restarts=1)
    workers = [RayWorker(f"worker-{n}", remote.remote(actor_flags, f"worker-{n}", threads)) for n in range(count)]
    for worker in workers:
        worker.wait_ready()
    log.info("%d Ray worker(s): %s", len(workers), ", ".join(f"{w.id} on {w.device}" for w in workers))
    return workers


class RayWorker(Worker):
    """One Ray actor (its own process and model); jobs reach it as `WorkOrder`s."""

    def __init__(self, worker_id: str, actor):
        super().__init__(worker_id, "starting")
        self.actor = actor
        self.pid: int | None = None

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        import ray
        from ray.exceptions import ActorUnavailableError

        deadline = time.monotonic() + timeout
        while True:
            try:
                info = ray.get(self.actor.describe.remote(), timeout=max(deadline - time.monotonic(), 1))
                break
            except ActorUnavailableError as error:  # restarting after a loss: ask again until it is back
                if time.monotonic() > deadline:
                    raise WorkerSetupError(f"Ray worker {self.id} did not come back: {error}") from None
                time.sleep(0.5)
            except Exception as error:
                raise WorkerSetupError(f"Ray worker {self.id} did not start: {error}") from None
        self.device, self.pid = info["device"], info["pid"]

    def recover(self) -> bool:
        """Ray restarts a lost actor once (max_restarts=1); the new process has no model loaded."""
        try:
            self.wait_ready(timeout=120)
        except WorkerSetupError as error:
            log.error("%s", error)
            return False
        self.model = self.model_path = None
        return True

    def close(self) -> None:
        import ray

        self.alive = False
        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:  # already gone
            pass

    # -- one job -----------------------------------------------------------------------------
    def run(self, job, queue) -> None:
        from ..extensions.processing import needs_scripts

        if needs_scripts(queue.state, job.kind, job.script_args, job.params, job.overrides):
            if len(queue.workers) > 1:
                job.params.extra_generation_params["Worker"] = "front"
            queue._run(job)  # scripts need A1111's `p` in this process
            return
        job.result = Processed()
        try:
            order, outdir = self._order(job, queue)
            reply = self._call(job, order)
            result = reply["result"]
            self.note_model(reply.get("model"), reply.get("model_path"))
            if job.params.save_images and reply["status"] != "failed":
                self._save(job, result, outdir)
            job.result = result
        except WorkerLost:
            raise
        except (ParamsError, OptionsError) as error:
            job.bad_input = True
            job._finish("failed", str(error))
            return
        except Exception as error:
            log.exception("job %s failed", job.id)
            job._finish("failed", f"{type(error).__name__}: {error}")
            return
        job.bad_input = reply["bad_input"]
        if reply["status"] == "failed":
            log.warning("job %s failed on %s: %s", job.id, self.id, reply["error"])
        job._finish(reply["status"], reply["error"])

    def _order(self, job, queue):
        state, p = queue.state, job.params
        if not job.keep_settings:
            p.settings = state.generation_settings(job.overrides)
        p.limits = Limits.from_flags(state.flags)
        p.validate()
        outdir = p.outdir or dated(state.output_folder(job.kind))
        if p.save_images:  # before any compute, as in-process jobs do
            check_output_folder(outdir, shown_from=state.flags.data_dir)
        extra = dict(p.extra_generation_params)
        if len(queue.workers) > 1:  # one worker: the infotext stays A1111's
            extra["Worker"] = self.id
        wanted = job.overrides.get("sd_model_checkpoint") or state.options["sd_model_checkpoint"] or ""
        checkpoint_hash = None
        if wanted:
            try:
                checkpoint_hash = state.models.find(wanted).sha256
            except LookupError:
                pass  # the worker says what is wrong (or loads the default, as in-process jobs do)
        vae = job.overrides.get("sd_vae") or state.options["sd_vae"]
        job._batches, job._passes = p.n_iter, 2 if getattr(p, "enable_hr", False) else 1
        params = dataclasses.replace(p, save_images=False, extra_generation_params=extra)
        return WorkOrder(job.id, job.kind, params, wanted, checkpoint_hash, vae), outdir

    def _call(self, job, order: WorkOrder) -> dict:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayError

        done = self.actor.run.remote(order)
        interrupted, preview_id = False, 0
        while True:
            ready, _ = ray.wait([done], timeout=POLL_SECONDS)
            if job.control.interrupted and not interrupted:
                interrupted = True
                self.actor.interrupt.remote(job.id)
            if job.control.skipped:  # cooperative: the worker's flag, checked at its next step
                job.control.skipped = False
                self.actor.skip.remote(job.id)
            if ready:
                break
            try:
                progress, preview, preview_id = ray.get(self.actor.poll.remote(preview_id), timeout=30)
            except (GetTimeoutError, RayError):
                continue  # a dead actor shows in `done` next
            self._show(job, progress, preview)
        try:
            return ray.get(done)
        except RayActorError as error:
            raise WorkerLost(f"worker {self.id} ({self.device}) was lost: {type(error).__name__}") from None

    @staticmethod
    def _show(job, progress: tuple, preview) -> None:
        batch, batches, step, steps = progress
        if batch != job._batch:
            job._start_batch(batch, batches)
        if step and step != job.step:
            job._on_step({"step": step, "steps": steps, "preview": (lambda: preview) if preview is not None else None})
        elif preview is not None:
            job.preview, job.preview_id = preview, job.preview_id + 1

    @staticmethod
    def _save(job, result: Processed, outdir) -> None:
        """Every image on disk with its infotext, as the engine saves in-process (generation/batches.py)."""
        settings = job.params.settings
        for index, image in enumerate(result.images):
            result.paths.append(save_image(
                image, outdir, seed=result.seeds[index], prompt=result.prompts[index],
                infotext=result.infotexts[index], pattern=settings.samples_filename_pattern,
                extension=settings.samples_format))

