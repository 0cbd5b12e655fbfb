"""The job queue alone: fairness, positions, owner checks, failure isolation, interrupt keeping images."""

import argparse
import threading
from pathlib import Path

import pytest
from PIL import Image

import webui.jobs as jobs
from tiny_models import make_tiny_model
from webui.generation.denoiser import JobControl
from webui.generation.params import ParamsError, Txt2ImgParams
from webui.generation.batches import Processed
from webui.jobs import JobQueue
from webui.options import Options
from webui.state import SharedState


class FakeModels:
    def __init__(self, model=None, fail_on=()):
        self.model, self.fail_on, self.loaded = model, set(fail_on), []

    def current(self):
        return self.model

    def switch(self, name):
        self.loaded.append(name)
        if name in self.fail_on:
            raise OSError(f"{name} is corrupt")
        return self.model


def make_state(tmp_path: Path, models=None) -> SharedState:
    flags = argparse.Namespace(data_dir=tmp_path, ckpt=None, disable_nan_check=False)
    return SharedState(flags, Options(tmp_path / "config.json"), models or FakeModels())


class Gate:
    """A stand-in for txt2img that records the order jobs ran in and can hold a job running."""

    def __init__(self):
        self.order, self.release, self.entered = [], threading.Event(), threading.Event()
        self.hold = set()

    def __call__(self, model, p, control: JobControl, root, result=None, **_):  # embeddings=, networks= (LoRA)
        self.order.append(p.prompt)
        if p.prompt in self.hold:
            self.entered.set()
            while not self.release.wait(0.01):
                control.check()
        if p.prompt == "bad":
            raise ParamsError("steps must be between 1 and 1000")
        if p.prompt == "crash":
            raise RuntimeError("boom")
        result = result if result is not None else Processed()  # the engine fills the job's result when given one
        for name, value in (("images", Image.new("RGB", (8, 8))), ("seeds", p.seed), ("subseeds", p.subseed),
                            ("prompts", p.prompt), ("negative_prompts", ""), ("infotexts", p.prompt)):
            getattr(result, name).append(value)
        return result


@pytest.fixture
def gate(monkeypatch):
    fake = Gate()
    monkeypatch.setattr(jobs, "txt2img", fake)
    return fake


@pytest.fixture
def queue(tmp_path):
    q = JobQueue(make_state(tmp_path))
    yield q
    q.stop()


def params(prompt, **kw):
    return Txt2ImgParams(prompt=prompt, **{"steps": 2, "width": 64, "height": 64, **kw})


def test_round_robin_between_owners_and_positions(queue, gate):
    gate.hold.add("block")
    first = queue.submit("txt2img", params("block"), "x")
    queue.start()
    assert gate.entered.wait(5)
    a = [queue.submit("txt2img", params(f"a{i}"), "alice") for i in range(3)]
    b = queue.submit("txt2img", params("b0"), "bob")
    c = queue.submit("txt2img", params("c0"), "carol")
    assert queue.position(first.id) == 0
    assert [j.params.prompt for j in queue.pending()] == ["a0", "b0", "c0", "a1", "a2"]
    assert queue.position(b.id) == 2 and queue.position(a[2].id) == 5
    gate.release.set()
    for job in (*a, b, c):
        assert job.wait(10).status == "done"
    assert gate.order == ["block", "a0", "b0", "c0", "a1", "a2"]
    assert queue.position(a[0].id) is None and queue.pending() == []


def test_only_the_owner_can_interrupt_or_skip(queue, gate):
    gate.hold.add("long")
    running = queue.submit("txt2img", params("long"), "alice")
    waiting = queue.submit("txt2img", params("next"), "alice")
    queue.start()
    assert gate.entered.wait(5)
    assert not queue.interrupt(running.id, "mallory") and not queue.skip(running.id, "mallory")
    assert not queue.interrupt(waiting.id, "mallory")
    assert queue.interrupt(waiting.id, "alice")  # cancelled while it waits
    assert waiting.wait(1).status == "interrupted" and queue.pending() == []
    assert queue.interrupt(running.id, "alice")
    assert running.wait(5).status == "interrupted"
    assert "next" not in gate.order


def test_a_failing_job_does_not_hurt_the_next(queue, gate):
    queue.start()
    bad = queue.submit("txt2img", params("bad"), "a")
    crash = queue.submit("txt2img", params("crash"), "b")
    good = queue.submit("txt2img", params("good"), "c")
    assert bad.wait(5).status == "failed" and bad.bad_input and "steps" in bad.error
    assert crash.wait(5).status == "failed" and "boom" in crash.error and not crash.bad_input
    assert good.wait(5).status == "done" and len(good.result.images) == 1


def test_model_load_failure_fails_only_that_job(tmp_path, gate):
    models = FakeModels(fail_on={"broken"})
    q = JobQueue(make_state(tmp_path, models))
    q.start()
    try:
        broken = q.submit("txt2img", params("x"), "a", override_settings={"sd_model_checkpoint": "broken"})
        fine = q.submit("txt2img", params("y"), "b")
        assert broken.wait(5).status == "failed" and "could not load the model" in broken.error
        assert fine.wait(5).status == "done"
    finally:
        q.stop()


def test_task_ids_and_kinds(queue, gate):
    job = queue.submit("txt2img", params("a"), "o", task_id="task(mine)")
    assert job.id == "task(mine)" and queue.get("task(mine)") is job
    with pytest.raises(ValueError):
        queue.submit("txt2img", params("b"), "o", task_id="task(mine)")  # still waiting
    with pytest.raises(ValueError):
        queue.submit("upscale", params("c"), "o")
    other = queue.submit("txt2img", params("d"), "o")
    assert other.id.startswith("task(txt2img-")


def test_overrides_apply_to_one_job_only(queue, gate):
    seen = []
    original = gate.__call__

    def record(model, p, control, root, **kwargs):  # embeddings=, networks= (LoRA), result=
        seen.append(p.settings.clip_skip)
        return original(model, p, control, root, result=kwargs.get("result"))

    jobs.txt2img = record
    queue.start()
    queue.submit("txt2img", params("a"), "o", override_settings={"CLIP_stop_at_last_layers": 2, "sd_vae": "x"}).wait(5)
    queue.submit("txt2img", params("b"), "o").wait(5)
    assert seen == [2, 1]
    with pytest.raises(ValueError):
        queue.submit("txt2img", params("c"), "o", override_settings={"CLIP_stop_at_last_layers": "two"})


def test_real_model_progress_preview_and_interrupt_keeps_finished_batches(tmp_path):
    state = make_state(tmp_path, FakeModels(make_tiny_model("sd1")))
    state.options.update({"show_progress_every_n_steps": 1})
    q = JobQueue(state)
    q.start()
    try:
        whole = q.submit("txt2img", params("a cat", seed=5, n_iter=2, save_images=True), "o").wait(30)
        assert whole.status == "done" and whole.result.seeds == [5, 6] and whole.progress == 1.0
        assert len(whole.result.paths) == 2 and all(p.is_file() for p in whole.result.paths)
        assert whole.preview is not None and whole.preview_id >= 2

        job = q.submit("txt2img", params("a cat", seed=5, n_iter=3, steps=3), "o")
        while not (job.result and job.result.images) and not job.is_finished:
            threading.Event().wait(0.005)
        q.interrupt(job.id, "o")
        job.wait(30)
        assert job.status == "interrupted" and 1 <= len(job.result.images) <= 3
        assert job.result.seeds == [5, 6, 7][: len(job.result.images)]
    finally:
        q.stop()


def test_a_job_without_scripts_runs_on_the_engine_without_building_p(tmp_path, monkeypatch):
    import webui.extensions.processing as scripts_layer

    def no_p(*args, **kwargs):
        raise AssertionError("A1111's p was built for a job with no script")

    monkeypatch.setattr(scripts_layer, "run_job", no_p)
    state = make_state(tmp_path, FakeModels(make_tiny_model("sd1")))
    q = JobQueue(state)
    try:
        batches = []
        job = q.submit("txt2img", params("a cat", seed=5, n_iter=2, save_images=False), "o")
        original = job._start_batch
        job._start_batch = lambda batch, total=None: (batches.append((batch, total)), original(batch, total))
        q.start()
        job.wait(30)
        assert job.status == "done" and job.result.seeds == [5, 6] and len(job.result.images) == 2
        assert batches == [(0, 2), (1, 2)]  # progress follows the batches as the scripts layer reports them
        assert scripts_layer.needs_scripts(state, "txt2img", [1])  # a chosen script (index 1) gets its p
        assert not scripts_layer.needs_scripts(state, "txt2img", [0])
    finally:
        q.stop()
