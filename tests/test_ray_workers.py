"""Ray workers on the CPU: a local Ray instance (started once for the module), two workers with tiny models,
the real engine. Fair order across owners on both workers, owner-scoped interrupt, a worker killed mid-job,
and GET /sdapi/v1/workers over real HTTP."""

import os
import signal
import time

import httpx
import pytest
from fastapi import FastAPI

from checkpoint_files import write_diffusers_folder
from live_server import LiveServer
from tiny_models import make_tiny_model
from webui.api import register_api
from webui.flags import parse_flags
from webui.generation.images import read_infotext
from webui.generation.params import Txt2ImgParams
from webui.jobs import JobQueue
from webui.state import SharedState
from webui.workers.ray_pool import start_ray_workers

pytestmark = pytest.mark.slow  # Ray and two worker processes start in several seconds


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import ray

    data = tmp_path_factory.mktemp("ray-data")
    write_diffusers_folder(make_tiny_model("sd1"), data / "models" / "Stable-diffusion" / "tiny")
    state = SharedState.create(parse_flags(["--data-dir", str(data), "--use-cpu", "all", "--precision", "full",
                                            "--workers", "2", "--max-steps", "1000"]))
    workers = start_ray_workers(state, {"num_cpus": 2, "object_store_memory": 100 * 2**20,
                                        "log_to_driver": False})
    yield state, workers
    for worker in workers:
        worker.close()
    ray.shutdown()


@pytest.fixture
def queue(cluster):
    state, workers = cluster
    queue = JobQueue(state, workers)
    state.queue = queue
    yield queue
    queue.stop()


def params(prompt, outdir, **kw):
    return Txt2ImgParams(prompt=prompt, outdir=outdir, **{"steps": 2, "width": 64, "height": 64, **kw})


def saved_infotexts(folder):
    return sorted(read_infotext(path) for path in folder.glob("*.png"))


def wait_running(job, timeout=60):
    deadline = time.monotonic() + timeout
    while job.status != "running" or job.step < 1:
        assert time.monotonic() < deadline and not job.is_finished, (job.status, job.error)
        time.sleep(0.02)


def test_jobs_of_three_owners_run_in_fair_order_on_both_workers(queue, tmp_path):
    jobs = [queue.submit("txt2img", params(f"{owner}{n}", tmp_path), owner)
            for owner in "abc" for n in (1, 2)]
    queue.start()  # submitted before the workers take any: the order is the queue's alone
    for job in jobs:
        assert job.wait(120).status == "done", job.error
    started = [job.params.prompt for job in sorted(jobs, key=lambda j: j.started)]
    assert started == ["a1", "b1", "c1", "a2", "b2", "c2"]
    assert {job.worker for job in jobs} == {"worker-0", "worker-1"}
    for job in jobs:  # several workers: the infotext names the one that ran the job
        assert job.result.infotexts[0].endswith(f"Worker: {job.worker}") or f"Worker: {job.worker}," in \
            job.result.infotexts[0]
        assert job.result.paths and job.result.paths[0].is_file()
    assert saved_infotexts(tmp_path) == sorted(job.result.infotexts[0] for job in jobs)
    deadline = time.monotonic() + 10  # a worker counts its job just after the job is reported done
    while sum(w["jobs_done"] for w in queue.workers_info()) < 6:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    info = {w["id"]: w for w in queue.workers_info()}
    assert all(w["model"].startswith("tiny") and w["job"] is None for w in info.values()), info


def test_interrupt_stops_only_its_owners_job(queue, tmp_path):
    queue.start()
    long = queue.submit("txt2img", params("long", tmp_path, steps=400), "a")
    wait_running(long)
    others = [queue.submit("txt2img", params(p, tmp_path), owner) for p, owner in (("b", "b"), ("c", "c"))]
    assert not queue.interrupt(long.id, "b")  # another owner's job is out of reach
    assert queue.interrupt(long.id, "a")
    assert long.wait(60).status == "interrupted"
    assert long.step < 400
    assert len(long.result.images) == 1 and long.result.paths[0].is_file()  # the interrupted batch, as far as it got
    for job in others:
        assert job.wait(60).status == "done", job.error


def test_workers_endpoint_lists_the_workers(queue):
    queue.start()
    app = FastAPI()
    register_api(app, queue.state)
    with LiveServer(app) as server:
        reply = httpx.get(f"{server.url}/sdapi/v1/workers", timeout=30)
    assert reply.status_code == 200
    workers = reply.json()
    assert [w["id"] for w in workers] == ["worker-0", "worker-1"]
    for worker in workers:
        assert {"id", "device", "model", "job", "jobs_done", "model_switches"} <= set(worker)
        assert "cpu" in worker["device"]


def test_a_worker_killed_mid_job_has_its_job_run_again_elsewhere(queue, tmp_path):
    queue.start()
    job = queue.submit("txt2img", params("victim", tmp_path, steps=300, n_iter=2), "a")
    wait_running(job)
    lost = next(w for w in queue.workers if w.id == job.worker)
    killed = lost.pid
    os.kill(killed, signal.SIGKILL)
    assert job.wait(120).status == "done", job.error
    assert job.attempts == 1 and job.worker != lost.id
    # Saved once: the killed worker saved nothing, the second run saved both images.
    assert saved_infotexts(tmp_path) == sorted(job.result.infotexts) and len(job.result.infotexts) == 2
    deadline = time.monotonic() + 120  # Ray starts the lost worker again, without a model
    while not (lost.alive and lost.pid != killed and lost.model is None):
        assert time.monotonic() < deadline
        time.sleep(0.2)
