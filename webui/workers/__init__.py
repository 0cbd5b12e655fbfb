"""Where jobs run: the worker interface between the job queue (webui/jobs.py) and generation.

The queue stays the only dispatcher: it picks the next job (round-robin across owners) and an idle
worker for it, then calls `worker.run(job, queue)` on that worker's own thread. A worker runs the job
to its end: it fills `job.result`, streams progress and previews into the job, honours the job's
interrupt/skip flags (`job.control`) and finishes the job, with every image saved before that.

Two kinds exist: `LocalWorker`, the default (the queue's own in-process generation, exactly as before:
no new dependency), and `ray_pool.RayWorker`, a Ray actor with its own loaded model (`--ray`, `--workers N`,
`--ray-address ADDR`). A worker that is lost mid-job (its process killed, its node gone) raises
`WorkerLost`; the queue then runs the job once more on another worker before failing it.
"""

from __future__ import annotations

from pathlib import Path


class WorkerLost(Exception):
    """The worker died while running a job; the job itself may be fine on another worker."""


class WorkerSetupError(RuntimeError):
    """The workers asked for on the command line cannot be started; the message says why and what to do."""


def same_checkpoint(a: str | Path | None, b: str | Path | None) -> bool:
    return a is not None and b is not None and str(Path(a).absolute()) == str(Path(b).absolute())


class Worker:
    """One place jobs run. Subclasses implement `run`; the rest is bookkeeping the queue and the API read."""

    in_process = False  # whether jobs run on this process's own model (state.models)

    def __init__(self, worker_id: str, device: str = "cpu"):
        self.id = worker_id
        self.device = device
        self.model: str | None = None  # the loaded checkpoint's title
        self.model_path: str | None = None  # its file or folder, for placement
        self.job: str | None = None  # the running job's id
        self.jobs_done = 0
        self.model_switches = 0  # times the loaded checkpoint was replaced by another
        self.alive = True

    def run(self, job, queue) -> None:
        raise NotImplementedError

    def recover(self) -> bool:
        """After `WorkerLost`: whether the worker can take jobs again (False: the queue stops using it)."""
        return False

    def close(self) -> None:
        """Release what the worker holds (a Ray actor); the queue does not use it afterwards."""

    def note_model(self, title: str | None, path: str | Path | None) -> None:
        """Record the checkpoint loaded now, counting a switch when another one was loaded before."""
        if path is None:
            return
        if self.model_path is not None and not same_checkpoint(self.model_path, path):
            self.model_switches += 1
        self.model, self.model_path = title, str(path)

    def describe(self) -> dict:
        return {"id": self.id, "device": self.device, "model": self.model, "job": self.job,
                "jobs_done": self.jobs_done, "model_switches": self.model_switches, "alive": self.alive}


class LocalWorker(Worker):
    """The default: the job runs in this process on the one model of `state.models` (JobQueue._run)."""

    in_process = True

    def __init__(self, state):
        slot = getattr(state.models, "slot", None)
        super().__init__("local", str(getattr(slot, "device", "cpu")))
        self.state = state

    def run(self, job, queue) -> None:
        queue._run(job)
        self._note_loaded()

    def _note_loaded(self) -> None:
        slot = getattr(self.state.models, "slot", None)
        model = getattr(slot, "model", None)
        if model is not None:
            self.note_model(Path(model.name).stem, model.path)


def workers_from_flags(state) -> list[Worker]:
    """The workers the command line asks for: Ray actors with --ray, --workers N or --ray-address,
    else the one in-process worker."""
    flags = state.flags
    if getattr(flags, "ray", False) or getattr(flags, "workers", None) or getattr(flags, "ray_address", None):
        from .ray_pool import start_ray_workers

        return start_ray_workers(state)
    return [LocalWorker(state)]
