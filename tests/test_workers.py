"""The queue with several workers, without Ray: placement by loaded checkpoint, a lost worker's job run once
more elsewhere then failed, a worker that does not come back, and the --ray flags' errors."""

import argparse
import sys
import threading
import time
from pathlib import Path

import pytest

from webui.flags import parse_flags
from webui.generation.batches import Processed
from webui.generation.params import Txt2ImgParams
from webui.jobs import JobQueue
from webui.options import Options
from webui.state import SharedState
from webui.workers import LocalWorker, Worker, WorkerLost, WorkerSetupError, workers_from_flags


class Checkpoints:
    """state.models as far as placement needs it: names to paths."""

    def find(self, name):
        return argparse.Namespace(path=Path("/models") / name, sha256=None)


class FakeWorker(Worker):
    """Runs a job by loading its checkpoint (recorded) and finishing it; `lose` makes runs die like a killed process."""

    def __init__(self, worker_id, model=None, lose=(), comes_back=True):
        super().__init__(worker_id)
        if model:
            self.note_model(model, f"/models/{model}")
        self.ran, self.lose, self.comes_back = [], set(lose), comes_back
        self.gate = threading.Event()
        self.gate.set()

    def run(self, job, queue):
        self.gate.wait(10)
        self.ran.append(job.params.prompt)
        if job.params.prompt in self.lose:
            raise WorkerLost(f"worker {self.id} was lost")
        wanted = job.overrides.get("sd_model_checkpoint")
        if wanted:
            self.note_model(wanted, f"/models/{wanted}")
        job.result = Processed()
        job._finish("done")

    def recover(self):
        return self.comes_back


def until(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def make_queue(tmp_path, workers):
    flags = argparse.Namespace(data_dir=tmp_path, ckpt=None, disable_nan_check=False)
    return JobQueue(SharedState(flags, Options(tmp_path / "config.json"), Checkpoints()), workers)


def submit(queue, prompt, owner="me", model=None):
    overrides = {"sd_model_checkpoint": model} if model else None
    return queue.submit("txt2img", Txt2ImgParams(prompt=prompt, steps=2, width=64, height=64), owner,
                        override_settings=overrides)


def test_a_job_goes_to_the_idle_worker_that_has_its_checkpoint(tmp_path):
    first, second = FakeWorker("w0", model="x"), FakeWorker("w1", model="y")
    queue = make_queue(tmp_path, [first, second])
    queue.start()
    until(lambda: len(queue._idle) == 2)  # both waiting for work: either may be the first to look at a job
    jobs = [submit(queue, "for x", "a", "x"), submit(queue, "for y", "b", "y")]
    try:
        assert all(job.wait(10).status == "done" for job in jobs)
        assert (first.ran, second.ran) == (["for x"], ["for y"])
        assert first.model_switches == second.model_switches == 0
        until(lambda: [w["jobs_done"] for w in queue.workers_info()] == [1, 1])  # counted once the job is done
    finally:
        queue.stop()


def test_switching_a_workers_checkpoint_is_counted(tmp_path):
    worker = FakeWorker("w0", model="x")
    queue = make_queue(tmp_path, [worker])
    queue.start()
    try:
        for model in ("y", "y", "x"):
            assert submit(queue, model, model=model).wait(10).status == "done"
        until(lambda: queue.workers_info()[0]["jobs_done"] == 3)
        info = queue.workers_info()[0]
        assert info["model_switches"] == 2 and info["model"] == "x"
    finally:
        queue.stop()


def test_a_lost_job_runs_once_more_on_another_worker_then_fails(tmp_path):
    workers = [FakeWorker("w0", lose={"always"}), FakeWorker("w1", lose={"always"})]
    for worker in workers:
        worker.gate.clear()
    queue = make_queue(tmp_path, workers)
    busy = submit(queue, "busy", "z")
    queue.start()
    until(lambda: busy.worker is not None)
    holder = next(w for w in workers if w.id == busy.worker)
    other = next(w for w in workers if w is not holder)
    other.lose.add("once")
    once = submit(queue, "once", "a")  # taken by the idle worker, which is lost while running it
    other.gate.set()
    try:
        until(lambda: once.attempts == 1)
        assert once.status == "queued"  # not on the worker it was lost on while another one exists
        holder.gate.set()
        assert once.wait(10).status == "done" and once.attempts == 1 and once.worker == holder.id
        assert other.ran.count("once") == 1 and holder.ran.count("once") == 1
        always = submit(queue, "always", "b")
        assert always.wait(10).status == "failed" and always.attempts == 1
        assert "twice" in always.error and "was lost" in always.error
        assert busy.wait(10).status == "done"
    finally:
        queue.stop()


def test_a_worker_that_does_not_come_back_is_no_longer_used(tmp_path):
    gone, other = FakeWorker("w0", model="x", lose={"fatal"}, comes_back=False), FakeWorker("w1", model="y")
    queue = make_queue(tmp_path, [gone, other])
    queue.start()
    until(lambda: len(queue._idle) == 2)
    job = submit(queue, "fatal", model="x")  # placed on w0, which has x loaded
    try:
        assert job.wait(10).status == "done" and job.worker == "w1"
        later = [submit(queue, f"later {n}", f"o{n}").wait(10) for n in range(3)]
        assert all(j.status == "done" and j.worker == "w1" for j in later)
        assert [w["alive"] for w in queue.workers_info()] == [False, True]
    finally:
        queue.stop()


def test_when_every_worker_is_gone_waiting_and_new_jobs_fail_instead_of_waiting_forever(tmp_path):
    only = FakeWorker("w0", lose={"fatal"}, comes_back=False)
    only.gate.clear()
    queue = make_queue(tmp_path, [only])
    fatal = submit(queue, "fatal", "a")
    waiting = submit(queue, "waiting", "b")
    queue.start()
    only.gate.set()
    try:
        assert fatal.wait(10).status == "failed"
        assert waiting.wait(10).status == "failed" and "no generation worker is left" in waiting.error
        late = submit(queue, "late", "c")
        assert late.wait(1).status == "failed" and "restart the WebUI" in late.error
    finally:
        queue.stop()


def test_the_default_is_one_in_process_worker(tmp_path):
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all"]))
    workers = workers_from_flags(state)
    assert len(workers) == 1 and isinstance(workers[0], LocalWorker)
    assert workers[0].describe()["device"] == "cpu" and workers[0].describe()["model"] is None


def test_ray_flags_without_ray_say_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as when it is not installed
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--ray"]))
    with pytest.raises(WorkerSetupError, match=r"pip install '\.\[ray\]'"):
        workers_from_flags(state)
    with pytest.raises(SystemExit):
        parse_flags(["--workers", "0"])
    assert parse_flags(["--ray-address", "10.0.0.5:6379"]).ray_address == "10.0.0.5:6379"


def test_a_work_order_names_the_worker_only_when_there_are_several(tmp_path):
    from webui.workers.ray_pool import RayWorker

    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all"]))
    queue = JobQueue(state, [FakeWorker("other")])
    worker = RayWorker("worker-0", actor=None)
    job = submit(queue, "x")
    order, outdir = worker._order(job, queue)  # one worker: the infotext stays A1111's
    assert "Worker" not in order.params.extra_generation_params and order.params.save_images is False
    assert outdir.parent == tmp_path / "outputs" / "txt2img-images" and outdir.is_dir()  # checked before compute
    queue.workers.append(worker)
    order, _ = worker._order(job, queue)
    assert order.params.extra_generation_params == {"Worker": "worker-0"}
    assert job.params.save_images is True and job.params.extra_generation_params == {}  # the front saves
    assert (order.checkpoint, order.vae, order.job_id) == ("", "Automatic", job.id)


def test_a_fault_in_a_worker_fails_its_job_and_the_worker_goes_on(tmp_path):
    class Faulty(FakeWorker):
        def run(self, job, queue):
            if job.params.prompt == "fault":
                raise KeyError("bug")
            super().run(job, queue)

    queue = make_queue(tmp_path, [Faulty("w0")])
    queue.start()
    try:
        failed = submit(queue, "fault").wait(10)
        assert failed.status == "failed" and "KeyError" in failed.error
        assert submit(queue, "fine").wait(10).status == "done"
    finally:
        queue.stop()
