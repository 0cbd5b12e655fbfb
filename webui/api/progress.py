"""Progress, interrupt and skip: per job, and only the caller's own job can be stopped.

A1111 has one global progress and anyone can interrupt anyone. Here every answer is about the
caller's own jobs: GET /sdapi/v1/progress takes `id_task` to follow one (without it: the caller's
running job, else their next waiting one), /internal/progress answers for the caller's task only,
and interrupt/skip act on the caller's job. Another's task id reads as unknown, so progress,
previews, prompts and even whether the id exists stay with the job's owner.
"""

from __future__ import annotations

import base64
import io
import json

from fastapi import HTTPException, Request

from ..jobs import Job
from ..state import SharedState
from .models import InternalProgressRequest


def _preview_png(job: Job) -> str | None:
    image = job.preview
    if image is None:
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _own(state: SharedState, owner: str, id_task: str | None) -> Job | None:
    job = state.queue.get(id_task) if id_task else None
    return job if job is not None and job.owner == owner else None


def sdapi_progress(state: SharedState, owner: str, id_task: str | None, skip_current_image: bool) -> dict:
    queue = state.queue
    job = _own(state, owner, id_task) if id_task else queue.next_job_of(owner)
    if job is None:
        return {"progress": 0.0, "eta_relative": 0.0, "state": {}, "current_image": None, "textinfo": None,
                "id_task": id_task, "status": None, "queue_position": None}
    position = queue.position(job.id)
    n_iter = getattr(job.params, "n_iter", 1)
    state_block = {
        "skipped": job.control.skipped, "interrupted": job.control.interrupted, "stopping_generation": False,
        "job": job.id, "job_count": n_iter if job.status == "running" else 0, "job_timestamp": "0",
        "job_no": job._batch, "sampling_step": job.step, "sampling_steps": job.steps,
    }
    return {
        "progress": job.progress, "eta_relative": job.eta, "state": state_block,
        "current_image": None if skip_current_image else _preview_png(job),
        "textinfo": _textinfo(job, position), "id_task": job.id, "status": job.status, "queue_position": position,
    }


def _textinfo(job: Job, position: int | None) -> str:
    if job.status == "queued":
        return f"In queue: {position}" if position else "Waiting..."
    if job.status == "running":
        note = job.control.note  # e.g. "compiling ..." on the first run of a size with --compile
        return f"Step {job.step}/{job.steps}: {note}" if note else f"Step {job.step}/{job.steps}"
    return job.error or job.status.capitalize()


def internal_progress(state: SharedState, req: InternalProgressRequest, owner: str) -> dict:
    """A1111's UI poll: its request and response shape, answered for the caller's task it names."""
    queue = state.queue
    job = _own(state, owner, req.id_task)
    if job is None:
        return {"active": False, "queued": False, "completed": False, "progress": None, "eta": None,
                "live_preview": None, "id_live_preview": -1, "textinfo": "Waiting..."}
    if job.status == "queued":
        position, waiting = queue.position(job.id), len(queue.pending())
        return {"active": False, "queued": True, "completed": False, "progress": None, "eta": None,
                "live_preview": None, "id_live_preview": -1,
                "textinfo": f"In queue: {position}/{waiting}" if position else "Waiting..."}
    preview = None
    if req.live_preview and job.preview is not None and job.preview_id != req.id_live_preview:
        preview = "data:image/png;base64," + _preview_png(job)
    return {"active": job.status == "running", "queued": False, "completed": job.is_finished,
            "progress": job.progress, "eta": job.eta if job.status == "running" else None,
            "live_preview": preview, "id_live_preview": job.preview_id, "textinfo": _textinfo(job, None)}


async def task_id_from(request: Request) -> str | None:
    """`id_task` from the query or a JSON body; both are optional (A1111 sends neither)."""
    if request.query_params.get("id_task"):
        return request.query_params["id_task"]
    body = await request.body()
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except ValueError:
        raise HTTPException(400, "body: expected JSON like {\"id_task\": \"...\"}") from None
    task = data.get("id_task") if isinstance(data, dict) else None
    if task is not None and not isinstance(task, str):
        raise HTTPException(422, "id_task: expected a string")
    return task


def stop_job(state: SharedState, owner: str, id_task: str | None, action: str) -> dict:
    """Interrupt or skip the caller's job: the one named, or else the caller's running job."""
    queue = state.queue
    if id_task is None:
        job = queue.running_job_of(owner)
        if job is None:
            return {"id_task": None, "ok": False}  # nothing of the caller's is running: nothing to do
    else:
        job = _own(state, owner, id_task)
        if job is None:  # another's task reads as unknown too
            raise HTTPException(404, f"id_task: you have no task {id_task!r}")
    ok = queue.interrupt(job.id, owner) if action == "interrupt" else queue.skip(job.id, owner)
    return {"id_task": job.id, "ok": ok}
