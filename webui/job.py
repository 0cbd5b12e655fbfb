"""One request for images, from submission to result: its owner, params, status, progress and preview,
and the control flags its owner's interrupt and skip set. The queue (jobs.py) runs it on a worker."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .generation.batches import Processed
from .generation.denoiser import JobControl

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "interrupted")


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
        self.worker: str | None = None  # the id of the worker that runs (or ran) it
        self.attempts = 0  # runs lost with their worker
        self.avoid: set[str] = set()  # workers lost while running it

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
