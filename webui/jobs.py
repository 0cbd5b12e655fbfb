"""The one job queue: every generation (UI, API, scripts) runs here, one job at a time per worker.

Why a queue of our own instead of one global lock: each job has an owner, so progress,
interrupt and skip act on that owner's job only, and waiting jobs are served round-robin
across owners, so one client's ten queued jobs cannot starve another client's one.

A job runs its batches (`n_iter`) one call at a time with the seeds fixed up front, so the
images are the same as one call would give. An interrupt keeps every image finished so far and,
as in A1111, the interrupted batch as far as it got (its last denoised estimate, decoded and saved).

Where a job runs is a worker's business (webui/workers): by default the one in-process worker, which is
`_run` below; with Ray, several. The queue alone dispatches: the next job in round-robin order goes to an
idle worker, preferably one that has the job's checkpoint loaded; a job whose worker was lost runs once more.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from .generation.denoiser import Interrupted
from .generation.images import output_folder_problem
from .job import Job
from .generation.params import Limits, ParamsError
from .generation.img2img import img2img
from .generation.batches import ModelUsed, Processed
from .generation.processing import txt2img
from .models.model import SDModel
from .options import OptionsError, checked_settings
from .state import SharedState
from .workers import WorkerLost, same_checkpoint

log = logging.getLogger(__name__)

KINDS = ("txt2img", "img2img")
KEEP_FINISHED = 256  # finished jobs remembered for progress/result look-ups
# Task ids are never reused, so one client's progress poll cannot come to show another's job.
# The ids of remembered jobs (waiting, running, the last KEEP_FINISHED finished) are refused, and
# so are the last KEEP_USED_IDS ids given out, forgotten jobs' included: a bounded memory, not
# every id ever seen. An id older than both could be taken again, but its first job is forgotten
# by then (no poll reaches it), and progress answers only a job's owner anyway (api/progress.py).
KEEP_USED_IDS = 16 * KEEP_FINISHED
MAX_TASK_ID = 200  # characters; a client's force_task_id is kept in that memory


def checked_overrides(overrides: dict[str, Any] | None, known: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `override_settings` entries, checked as Options checks a stored value (type, range, choices:
    options.option_problem). With `known` (Options.defaults()) a key that is no setting is refused, as in A1111;
    without, only A1111's and our keys are kept. A bad value is an OptionsError naming the key."""
    return checked_settings(overrides, "override_settings", known)


class JobQueue:
    """Waiting jobs per owner, served round-robin; one thread per worker (webui/workers) takes them.
    `workers`: where jobs run; None: what the flags ask for (workers_from_flags), made at start()."""

    def __init__(self, state: SharedState, workers: list | None = None):
        self.state = state
        self.workers: list = list(workers or [])
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}  # every job still remembered, by id
        self._used_ids: OrderedDict[str, None] = OrderedDict()  # the last KEEP_USED_IDS ids, oldest first
        self._waiting: dict[str, deque[Job]] = {}  # owner -> their waiting jobs, oldest first
        self._turns: list[str] = []  # owners with waiting jobs; the first is served next
        self._running: dict[str, Job] = {}  # worker id -> its job
        self._idle: set[str] = set()  # ids of the workers waiting for a job
        self._threads: list[threading.Thread] = []
        self._stopping = False

    # -- workers -----------------------------------------------------------------------------
    def start(self) -> None:
        if not self.workers:
            from .workers import workers_from_flags

            workers = workers_from_flags(self.state)  # Ray takes seconds to start: outside the lock
            with self._cond:
                self.workers = self.workers or workers
        with self._cond:
            if any(thread.is_alive() for thread in self._threads):
                return
            self._stopping = False
            # All named "job-queue": code that must not wait for the queue on a worker's thread checks the name.
            self._threads = [threading.Thread(target=self._work, args=(worker,), name="job-queue", daemon=True)
                             for worker in self.workers if worker.alive]
            for thread in self._threads:
                thread.start()
        self._check_outputs()

    def workers_info(self) -> list[dict]:
        """GET /sdapi/v1/workers: each worker's id, device, loaded model, current job and counts."""
        with self._cond:
            return [worker.describe() for worker in self.workers]

    def close_workers(self) -> None:
        """stop(), then release the workers (Ray actors); a later start() makes new ones from the flags."""
        self.stop()
        for worker in self.workers:
            worker.close()
        self.workers = []

    @property
    def outputs_root(self) -> Path:
        """The data dir's outputs folder; images go where the settings say (options.output_folder)."""
        return self.state.flags.data_dir / "outputs"

    def _check_outputs(self) -> None:
        """Say in the log at start, not after the first job's compute, when images cannot be saved;
        each job checks its folder again before sampling (generation/images.check_output_folder)."""
        for kind in KINDS:
            folder = self.state.output_folder(kind)
            if (problem := output_folder_problem(folder, shown_from=self.state.flags.data_dir)) is not None:
                log.warning("images cannot be saved in %s: %s; jobs that save images will fail until "
                            "this is fixed", folder, problem)

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stopping = True
            for job in self._running.values():
                job.control.interrupted = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        self._threads = []

    def _work(self, worker) -> None:
        while True:
            with self._cond:
                self._idle.add(worker.id)
                job = None
                while not self._stopping and (job := self._take_for(worker)) is None:
                    self._cond.wait()
                self._idle.discard(worker.id)
                if job is None:
                    return
                self._running[worker.id] = job
                job.status, job.started, job.worker, worker.job = "running", time.time(), worker.id, job.id
            lost = None
            try:
                worker.run(job, self)
            except WorkerLost as error:
                lost = error
            except Exception as error:  # a fault of the worker's own code: this job fails, the worker goes on
                log.exception("worker %s failed on job %s", worker.id, job.id)
                if not job.is_finished:
                    job.result = job.result or Processed()
                    job._finish("failed", f"{type(error).__name__}: {error}")
            finally:
                with self._cond:
                    del self._running[worker.id]
                    worker.job = None
                    if lost is not None:
                        self._after_loss(job, worker, lost)
                    elif job.is_finished:
                        worker.jobs_done += 1
                    self._forget_old()
                    self._cond.notify_all()
            if lost is not None and not worker.recover():
                with self._cond:
                    worker.alive = False
                    if not any(w.alive for w in self.workers):
                        self._fail_waiting("no generation worker is left (all were lost); restart the WebUI")
                    self._cond.notify_all()  # jobs that avoided it may go anywhere now
                log.error("worker %s is gone; %d worker(s) left", worker.id, sum(w.alive for w in self.workers))
                return

    def _fail_waiting(self, why: str) -> None:
        """Every waiting job fails with `why` (with the queue's lock held): none is left waiting for nothing."""
        for jobs in self._waiting.values():
            for job in jobs:
                job.result = job.result or Processed()
                job._finish("failed", why)
        self._waiting.clear()
        self._turns.clear()

    def _take_for(self, worker) -> Job | None:
        """The job `worker` runs next, or None: each owner's oldest job in round-robin order; with several
        workers, the first of those that fits this worker (see `_fits`) so that placement never reorders an
        owner's own jobs."""
        if not self._turns:
            return None
        if len(self.workers) == 1:
            return self._take(self._turns[0])
        for owner in self._turns:
            if self._fits(worker, self._waiting[owner][0]):
                job = self._take(owner)
                self._cond.notify_all()  # the other idle workers look again: what fitted them may have changed
                return job
        return None

    def _fits(self, worker, job: Job) -> bool:
        """Not a worker the job was lost on while another can take it; not a worker without the job's
        checkpoint while an idle one has it loaded."""
        others = [w for w in self.workers if w is not worker and w.alive and w.id not in job.avoid]
        if worker.id in job.avoid and others:
            return False
        wanted = self._checkpoint_path(job)
        if wanted is None or same_checkpoint(worker.model_path, wanted):
            return True
        return not any(w.id in self._idle and same_checkpoint(w.model_path, wanted) for w in others)

    def _checkpoint_path(self, job: Job) -> str | None:
        wanted = job.overrides.get("sd_model_checkpoint") or self.state.options["sd_model_checkpoint"]
        try:
            return str(self.state.models.find(wanted).path) if wanted else None
        except (LookupError, AttributeError):
            return None

    def _take(self, owner: str) -> Job:
        self._turns.remove(owner)
        job = self._waiting[owner].popleft()
        if self._waiting[owner]:
            self._turns.append(owner)  # back of the line: everyone else gets a turn first
        else:
            del self._waiting[owner]
        return job

    def _after_loss(self, job: Job, worker, error: WorkerLost) -> None:
        """A job whose worker died: queued again at the head of the line, once; then it fails, saying why."""
        job.avoid.add(worker.id)
        if job.control.interrupted:
            job._finish("interrupted")
        elif job.attempts == 0:
            log.warning("job %s: %s; it runs again on another worker", job.id, error)
            job.attempts, job.status, job.worker, job.result = 1, "queued", None, None
            job.step = job._batch = 0
            job.progress = 0.0
            self._waiting.setdefault(job.owner, deque()).appendleft(job)
            if job.owner in self._turns:
                self._turns.remove(job.owner)
            self._turns.insert(0, job.owner)
        else:
            job.result = job.result or Processed()
            job._finish("failed", f"{error} twice while running this job (it was run again once on another "
                                  "worker); no image of it was kept")

    def _run(self, job: Job) -> None:
        result = Processed()
        job.result = result
        try:
            model = self._model_for(job)
        except Exception as error:  # a bad checkpoint fails this job; the server keeps serving
            log.warning("job %s: model load failed: %s", job.id, error)
            job._finish("failed", f"could not load the model: {error}")
            return
        try:
            p = job.params
            if not job.keep_settings:
                p.settings = self.state.generation_settings(job.overrides)
            p.limits = Limits.from_flags(self.state.flags)  # the server's, whoever built the params
            p.validate()
            self._use_vae(job, model)
            if isinstance(model, SDModel):
                result.model = ModelUsed.of(model)
            self._run_batches(job, model, p, result)
        except Interrupted:
            job._finish("interrupted")
        except (ParamsError, OptionsError) as error:  # a parameter or a setting a script or the user chose
            job.bad_input = True
            job._finish("failed", str(error))
        except Exception as error:
            if job.control.interrupted:  # e.g. a script that stumbled over the images it did not get
                job._finish("interrupted")
                return
            log.exception("job %s failed", job.id)
            job._finish("failed", f"{type(error).__name__}: {error}")
        else:
            job._finish("interrupted" if job.control.interrupted else "done")

    def _run_batches(self, job: Job, model, p, result: Processed) -> None:
        # A job that needs no script runs on the engine directly, filling the job's result batch by batch. Otherwise
        # it goes through the scripts layer (webui/extensions/processing.py), which builds A1111's `p`, fixes the
        # seeds once and calls our engine batch by batch with each batch's prompts and seeds (the same seeds per
        # image as one call); scripts (always-on, or the selected one's run()) hook in on the way.
        from .extensions.processing import needs_scripts, run_job
        from .networks import library_for_flags
        from .networks.embeddings import database_for  # textual inversion: the embeddings that fit a model

        job._batches, job._passes = p.n_iter, 2 if getattr(p, "enable_hr", False) else 1
        root = self.outputs_root
        # The folders the settings name as the job starts (never a request's override_settings: checked_settings).
        samples_dir, grids_dir = self.state.output_folder(job.kind), self.state.output_folder(job.kind, grids=True)
        # LoRA: the library of --lora-dir (else models/Lora), shared so parsed files stay cached.
        networks = library_for_flags(self.state.flags)

        def generate(model, params, hooks, result=None):
            embeddings = database_for(self.state).for_model(model) if isinstance(model, SDModel) else None
            ti = {"embeddings": embeddings} if embeddings is not None and embeddings.loaded else {}
            engine = txt2img if job.kind == "txt2img" else img2img
            return engine(model, params, job.control, root, networks=networks, hooks=hooks, result=result,
                          samples_dir=samples_dir, **ti)

        if not needs_scripts(self.state, job.kind, job.script_args, p, job.overrides):  # the engine, directly: no `p` needed
            job.control.on_batch = job._start_batch
            generate(model, p, None, result)
            return
        run_job(self.state, job.kind, p, job.script_args, job.control, is_api=job.is_api, generate=generate,
                model=model, samples_dir=samples_dir, grids_dir=grids_dir, overrides=job.overrides, result=result,
                on_batch=job._start_batch)

    def _use_vae(self, job: Job, model) -> None:
        """The job's VAE (`sd_vae` override, else the setting) swapped into the model; see models/vae.py."""
        from .models.vae import VaeNotFound, apply_vae_setting

        if not isinstance(model, SDModel):
            return
        choice = job.overrides.get("sd_vae") or self.state.options["sd_vae"]
        try:
            apply_vae_setting(self.state, model, choice)
        except VaeNotFound as error:
            raise ParamsError(str(error)) from None

    def _model_for(self, job: Job):
        """The job's checkpoint: its override, else the chosen setting, else whatever is loaded."""
        models = self.state.models
        wanted = job.overrides.get("sd_model_checkpoint") or self.state.options["sd_model_checkpoint"]
        return models.switch(wanted) if wanted else models.current()

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.is_finished]
        for job in sorted(finished, key=lambda j: j.finished or 0)[:-KEEP_FINISHED]:
            del self._jobs[job.id]

    # -- clients -----------------------------------------------------------------------------
    def submit(self, kind: str, params, owner: str, task_id: str | None = None, *,
               override_settings: dict[str, Any] | None = None, keep_settings: bool = False,
               script_args: list | None = None, is_api: bool = False) -> Job:
        """Queue a job. `override_settings` (checked with `checked_overrides`) apply to this job only;
        `keep_settings` keeps `params.settings` as given instead of filling it from the options.
        `script_args`: A1111's script arguments (index 0 picks the selected script); None: defaults."""
        if kind not in KINDS:
            raise ValueError(f"unknown job kind {kind!r}; expected one of {', '.join(KINDS)}")
        known = self.state.options.defaults() if self.state.options is not None else None
        overrides = checked_overrides(override_settings, known)
        if task_id is not None and len(task_id) > MAX_TASK_ID:
            raise ValueError(f"a task id may have at most {MAX_TASK_ID} characters")
        with self._cond:
            job_id = task_id or f"task({kind}-{secrets.token_hex(8)})"
            if job_id in self._jobs or job_id in self._used_ids:
                raise ValueError(f"task id {job_id!r} was already used; choose a new one (ids are never reused)")
            job = Job(job_id, kind, owner, params, overrides, keep_settings, script_args, is_api)
            self._jobs[job_id] = job
            self._used_ids[job_id] = None
            if len(self._used_ids) > KEEP_USED_IDS:
                self._used_ids.popitem(last=False)
            if owner not in self._waiting:
                self._waiting[owner] = deque()
                self._turns.append(owner)
            self._waiting[owner].append(job)
            if self.workers and not any(w.alive for w in self.workers):
                self._fail_waiting("no generation worker is left (all were lost); restart the WebUI")
            self._cond.notify_all()
        return job

    def get(self, task_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(task_id)

    def current(self) -> Job | None:
        """A running job (the first worker's, with several), or None."""
        with self._cond:
            return next(iter(self._running.values()), None)

    def pending(self) -> list[Job]:
        """The waiting jobs, in the order they will run (the running job is not included)."""
        with self._cond:
            return self._order()

    def _order(self) -> list[Job]:
        # Round-robin projected forward: each owner's first job in turn order, then each second...
        queues = [list(self._waiting[owner]) for owner in self._turns]
        order = []
        for depth in range(max((len(q) for q in queues), default=0)):
            order += [q[depth] for q in queues if depth < len(q)]
        return order

    def position(self, task_id: str) -> int | None:
        """0 for the running job, n for the n-th waiting one, None for finished or unknown ids."""
        with self._cond:
            if any(job.id == task_id for job in self._running.values()):
                return 0
            for index, job in enumerate(self._order(), start=1):
                if job.id == task_id:
                    return index
            return None

    def interrupt(self, task_id: str, owner: str) -> bool:
        """Stop the owner's running job (keeping finished images), or cancel it while it waits."""
        with self._cond:
            job = self._jobs.get(task_id)
            if job is None or job.owner != owner or job.is_finished:
                return False
            if job.status == "running":
                job.control.interrupted = True
                return True
            self._waiting[owner].remove(job)
            if not self._waiting[owner]:
                del self._waiting[owner]
                self._turns.remove(owner)
            job.result = Processed()
            job._finish("interrupted")
            return True

    def skip(self, task_id: str, owner: str) -> bool:
        """Abandon the current batch of the owner's running job; it goes on with the next."""
        with self._cond:
            job = self._jobs.get(task_id)
            if job is None or job.owner != owner or job.status != "running":
                return False
            job.control.skipped = True
            return True

    def running_job_of(self, owner: str) -> Job | None:
        with self._cond:
            return next((job for job in self._running.values() if job.owner == owner), None)

    def next_job_of(self, owner: str) -> Job | None:
        """The owner's running job, else the first of their waiting ones, else None."""
        with self._cond:
            if (running := next((job for job in self._running.values() if job.owner == owner), None)) is not None:
                return running
            waiting = self._waiting.get(owner)
            return waiting[0] if waiting else None
