"""The one job queue: every generation (UI, API, scripts) runs here, one at a time, on one worker.

Why a queue of our own instead of one global lock: each job has an owner, so progress,
interrupt and skip act on that owner's job only, and waiting jobs are served round-robin
across owners, so one client's ten queued jobs cannot starve another client's one.

A job runs its batches (`n_iter`) one call at a time with the seeds fixed up front, so the
images are the same as one call would give. An interrupt keeps every image finished so far and,
as in A1111, the interrupted batch as far as it got (its last denoised estimate, decoded and saved).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from .generation.denoiser import Interrupted, JobControl
from .generation.images import output_folder_problem
from .generation.params import Limits, ParamsError
from .generation.img2img import img2img
from .generation.batches import ModelUsed, Processed
from .generation.processing import txt2img
from .models.model import SDModel
from .state import OptionsError, SharedState, checked_settings

log = logging.getLogger(__name__)

KINDS = ("txt2img", "img2img")
FINISHED = ("done", "failed", "interrupted")
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
    state.option_problem). With `known` (Options.defaults()) a key that is no setting is refused, as in A1111;
    without, only A1111's and our keys are kept. A bad value is an OptionsError naming the key."""
    return checked_settings(overrides, "override_settings", known)


class Job:
    """One request for images, from submission to result."""

    def __init__(self, job_id: str, kind: str, owner: str, params, overrides: dict[str, Any], keep_settings: bool,
                 script_args: list | None = None, is_api: bool = False):
        self.id = job_id
        self.kind = kind
        self.owner = owner
        self.params = params
        self.overrides = overrides
        self.keep_settings = keep_settings
        self.script_args = script_args  # A1111's positional script args (webui/extensions); None: defaults
        self.is_api = is_api
        self.status = "queued"
        self.step = 0
        self.steps = 0
        self.progress = 0.0
        self.preview = None
        self.preview_id = 0
        self.result: Processed | None = None
        self.error: str | None = None
        self.bad_input = False  # failed on a parameter (ParamsError), not on the server's side
        self.submitted = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.control = JobControl(on_step=self._on_step)
        self._done = threading.Event()
        self._batch = 0
        self._batches = 1
        self._passes = 1
        self._pass = 0

    @property
    def eta(self) -> float:
        """Seconds left, from the time taken so far; 0.0 before there is anything to go on."""
        if self.status != "running" or not self.started or self.progress <= 0:
            return 0.0
        elapsed = time.time() - self.started
        return max(elapsed / self.progress - elapsed, 0.0)

    def wait(self, timeout: float | None = None) -> "Job":
        self._done.wait(timeout)
        return self

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    def _start_batch(self, batch: int, batches: int | None = None) -> None:
        self._batch, self._pass, self.step = batch, 0, 0
        if batches:  # a script may run several calls of its own; progress follows the current one
            self._batches = batches

    def _on_step(self, info: dict) -> None:
        # A step count that falls back means the next pass (hires fix) of the same batch began.
        if info["step"] <= self.step:
            self._pass = min(self._pass + 1, self._passes - 1)
        self.step, self.steps = info["step"], info["steps"]
        within = (self._pass + self.step / max(self.steps, 1)) / self._passes
        self.progress = min((self._batch + within) / self._batches, 1.0)
        if info.get("preview") is not None:
            try:
                self.preview = info["preview"]()
                self.preview_id += 1
            except Exception:  # a preview is a nicety; it never fails the job
                log.exception("live preview failed")

    def _finish(self, status: str, error: str | None = None) -> None:
        self.status, self.error, self.finished = status, error, time.time()
        if status == "done":
            self.progress = 1.0
        self._done.set()


class JobQueue:
    """Waiting jobs per owner, served round-robin by one worker thread."""

    def __init__(self, state: SharedState):
        self.state = state
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}  # every job still remembered, by id
        self._used_ids: OrderedDict[str, None] = OrderedDict()  # the last KEEP_USED_IDS ids, oldest first
        self._waiting: dict[str, deque[Job]] = {}  # owner -> their waiting jobs, oldest first
        self._turns: list[str] = []  # owners with waiting jobs; the first is served next
        self._current: Job | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- worker ------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._work, name="job-queue", daemon=True)
            self._thread.start()
        self._check_outputs()

    @property
    def outputs_root(self) -> Path:
        return self.state.flags.data_dir / "outputs"

    def _check_outputs(self) -> None:
        """Say in the log at start, not after the first job's compute, when images cannot be saved;
        each job checks its folder again before sampling (generation/images.check_output_folder)."""
        for kind in KINDS:
            folder = self.outputs_root / f"{kind}-images"
            if (problem := output_folder_problem(folder, shown_from=self.state.flags.data_dir)) is not None:
                log.warning("images cannot be saved in %s: %s; jobs that save images will fail until "
                            "this is fixed", folder, problem)

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stopping = True
            if self._current is not None:
                self._current.control.interrupted = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._turns and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._take_next()
                self._current = job
                job.status, job.started = "running", time.time()
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._current = None
                    self._forget_old()

    def _take_next(self) -> Job:
        owner = self._turns.pop(0)
        job = self._waiting[owner].popleft()
        if self._waiting[owner]:
            self._turns.append(owner)  # back of the line: everyone else gets a turn first
        else:
            del self._waiting[owner]
        return job

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
        # LoRA: the library of --lora-dir (else models/Lora), shared so parsed files stay cached.
        networks = library_for_flags(self.state.flags)

        def generate(model, params, hooks, result=None):
            embeddings = database_for(self.state).for_model(model) if isinstance(model, SDModel) else None
            ti = {"embeddings": embeddings} if embeddings is not None and embeddings.loaded else {}
            engine = txt2img if job.kind == "txt2img" else img2img
            return engine(model, params, job.control, root, networks=networks, hooks=hooks, result=result, **ti)

        if not needs_scripts(self.state, job.kind, job.script_args, p, job.overrides):  # the engine, directly: no `p` needed
            job.control.on_batch = job._start_batch
            generate(model, p, None, result)
            return
        run_job(self.state, job.kind, p, job.script_args, job.control, is_api=job.is_api, generate=generate,
                model=model, outputs_root=root, overrides=job.overrides, result=result, on_batch=job._start_batch)

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
            self._cond.notify_all()
        return job

    def get(self, task_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(task_id)

    def current(self) -> Job | None:
        with self._cond:
            return self._current

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
            if self._current is not None and self._current.id == task_id:
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
            return self._current if self._current is not None and self._current.owner == owner else None

    def next_job_of(self, owner: str) -> Job | None:
        """The owner's running job, else the first of their waiting ones, else None."""
        with self._cond:
            if self._current is not None and self._current.owner == owner:
                return self._current
            waiting = self._waiting.get(owner)
            return waiting[0] if waiting else None
