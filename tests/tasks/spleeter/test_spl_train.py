"""The training loop end to end: the quick preset learns, resume continues, cancel saves, evaluate scores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workbench.config.io import load_config_file
from workbench.runner.checkpoints import load_checkpoint_file
from workbench.runner.context import RunContext
from workbench.tasks import TASKS
from workbench.tasks.spleeter import MONITOR
from workbench.tasks.spleeter.config import SpleeterConfig
from workbench.tasks.spleeter.separate import separate_file
from workbench.tasks.spleeter.train import evaluate, run

QUICK = Path(__file__).resolve().parents[3] / "configs" / "spleeter" / "quick.yaml"


def last(ctx: RunContext, key: str) -> float:
    ctx.flush()
    return ctx.backend.series(key)[-1][1]


def tiny_cfg(cache: Path, **kw) -> SpleeterConfig:
    """Two 4-second songs at 8 kHz, 2 steps per epoch: exercises the loop, not the learning."""
    base = dict(train_manifest="", synthetic={"songs": 2, "valid_songs": 1, "duration": 4.0}, sample_rate=8000,
                frame_length=256, frame_step=64, F=64, T=64, chunk_duration=2.5, n_chunks_per_song=2,
                batch_size=2, num_workers=0, epochs=1, lr=1e-3, cache_dir=str(cache), valid_max_duration=2.0)
    return SpleeterConfig(**(base | kw))


@pytest.mark.slow
def test_quick_preset_beats_the_mixture(tmp_path):
    cfg = load_config_file(QUICK, [f"cache_dir={tmp_path / 'cache'}"])
    ctx = RunContext.local(tmp_path / "run", monitor=MONITOR, keep_ckpt=cfg.keep_ckpt)
    TASKS["spleeter"].run(cfg, ctx)
    model, mixture = last(ctx, "valid/si_sdr_vocals"), last(ctx, "valid/si_sdr_vocals_mixture")
    assert model > mixture + 1.0, (model, mixture)
    assert last(ctx, "valid/si_sdri_vocals") > 1.0
    assert last(ctx, "valid/si_sdr_vocals_irm") > model  # the ideal mask bounds what a mask model can do
    losses = [v for _, v in ctx.backend.series("train/loss")]
    assert losses[-1] < losses[0]
    kinds = {c.kind for c in ctx.backend.checkpoints}
    assert kinds == {"checkpoint", "inference"}
    exported = [c for c in ctx.backend.checkpoints if c.kind == "inference"][0]
    assert exported.path == "model/spleeter-2stems.pt"
    ctx.close()


def test_resume_continues_steps_and_cancel_saves(tmp_path):
    cfg = tiny_cfg(tmp_path / "cache", epochs=2)
    first = RunContext.local(tmp_path / "run", monitor=MONITOR, keep_ckpt=1)
    first.request_stop()  # cancel during the first step: the loop must checkpoint and return
    run(cfg, first)
    state = first.checkpoints.latest()
    assert state["step"] == 1 and state["epoch"] == 0
    assert state["state"]["loop"]["step"] == 1 and state["state"]["loop"]["epoch_batches"] == 1
    assert ("cancelled", "stopped at step 1; checkpoint saved") in first.backend.events

    second = RunContext.local(tmp_path / "run", monitor=MONITOR, keep_ckpt=1, resume_state=state)
    run(cfg, second)
    second.flush()
    steps = [s for s, _ in second.backend.series("train/loss")]
    assert steps[0] > 1 and max(steps) == 4  # 2 epochs x 2 steps in total, counting on from step 1
    final = second.checkpoints.latest()
    assert final["epoch"] == 2 and final["step"] == 4 and final["state"]["loop"]["step"] == 4
    torch.testing.assert_close(  # the optimizer state came back (Adam's step count continues)
        final["state"]["optimizer"]["state"][0]["step"], torch.tensor(4.0)
    )
    assert any(kind == "resume" for kind, _ in second.backend.events)


def test_fork_without_optimizer_and_evaluate(tmp_path):
    cfg = tiny_cfg(tmp_path / "cache")
    parent = RunContext.local(tmp_path / "parent", monitor=MONITOR)
    run(cfg, parent)
    state = parent.checkpoints.latest()
    fork_cfg = cfg.model_copy(update={"load_optimizer": False, "start": 0})
    child = RunContext.local(tmp_path / "child", monitor=MONITOR, init_state=state)
    run(fork_cfg, child)
    child_state = child.checkpoints.latest()["state"]
    assert child_state["loop"]["step"] == 2  # a fork starts its own step count
    assert child_state["optimizer"]["state"][0]["step"].item() == 2.0  # fresh optimizer
    metrics = evaluate(cfg, child_state, None, child)
    assert {"valid/si_sdr_vocals", "valid/sdr_accompaniment", "valid/si_sdr_vocals_irm", "valid/loss"} <= set(metrics)
    # the exported model is Spleeter's own flat file, not an envelope; loading it wraps it as the state
    wrapped = load_checkpoint_file(tmp_path / "child" / "model" / "spleeter-2stems.pt")
    exported = wrapped["state"]
    assert wrapped["config"] == exported["config"] and wrapped["step"] == 0
    song = next((tmp_path / "cache" / "songs").glob("synth-*/valid/song_0000/mixture.wav"))
    paths = separate_file(exported, exported["config"], song, tmp_path / "sep")
    assert paths["vocals"].is_file()
    test_metrics = evaluate(cfg.model_dump(mode="json"), exported, song.parents[1], child)
    assert "test/si_sdr_vocals" in test_metrics


def test_four_stems_in_process_data_mode(tmp_path):
    cfg = tiny_cfg(tmp_path / "cache", stems=4, mode="process_data")
    ctx = RunContext.local(tmp_path / "run", monitor=MONITOR)
    run(cfg, ctx)
    ctx.flush()
    keys = {k for k, _, _, _ in ctx.backend.metrics}
    for stem in ("vocals", "drums", "bass", "other"):
        assert {f"valid/si_sdr_{stem}", f"valid/si_sdri_{stem}", f"valid/sdr_{stem}_irm"} <= keys
    assert any("process_data: built spectrogram cache" in message for _, message in ctx.backend.events)
    assert ctx.backend.phase is None  # the "process_data: n/N songs" status is cleared once training starts


def _pre_envelope(envelope: dict) -> dict:
    """The flat layout main wrote (step in `loop`, early stopping in `loop`, NumPy's RNG as numpy_keys/pos)."""
    state = envelope["state"]
    loop = {k: v for k, v in state["loop"].items() if k != "early_stopping"} | state["loop"]["early_stopping"]
    rng = {"torch": state["rng"]["torch"], "numpy_keys": state["rng"]["numpy"]["keys"],
           "numpy_pos": state["rng"]["numpy"]["pos"]}
    return {**state, "loop": loop, "rng": rng, "config": envelope["config"]}


def test_evaluations_are_logged_at_the_checkpoints_step_and_old_files_resume(tmp_path):
    from types import SimpleNamespace

    from workbench.runner.worker import _evaluate

    cfg = tiny_cfg(tmp_path / "cache")
    parent = RunContext.local(tmp_path / "parent", monitor=MONITOR)
    run(cfg, parent)
    envelope = parent.checkpoints.latest()
    assert envelope["step"] == 2
    for name, start in (("new", envelope), ("old", _pre_envelope(envelope))):
        job = RunContext.local(tmp_path / f"eval-{name}", monitor=MONITOR, init_state=start)
        _evaluate(TASKS["spleeter"], cfg, job, SimpleNamespace(parent_checkpoint_id=1, eval_data=None))
        job.flush()
        steps = {step for _, step, _, _ in job.backend.metrics}
        assert steps == {2}, name  # the worker once read a top-level "step" Spleeter never had, and logged step 0

    resumed = RunContext.local(tmp_path / "resumed", monitor=MONITOR, resume_state=_pre_envelope(envelope))
    run(cfg.model_copy(update={"epochs": 2}), resumed)
    resumed.flush()
    steps = [s for s, _ in resumed.backend.series("train/loss")]
    assert min(steps) > 2 and max(steps) == 4  # counting on from the old file's loop.step
    assert resumed.checkpoints.latest()["state"]["loop"]["early_stopping"]["best"] is not None


def test_fast_train_after_process_data_never_opens_an_audio_file(tmp_path, monkeypatch):
    import builtins
    import shutil

    from workbench.tasks.spleeter.data import DataError

    cfg = tiny_cfg(tmp_path / "cache", mode="process_data")
    first = RunContext.local(tmp_path / "process", monitor=MONITOR)
    run(cfg, first)
    first.flush()
    saved = [m for kind, m in first.backend.events if kind == "data" and "tensors saved in" in m]
    assert saved, first.backend.events

    shutil.rmtree(tmp_path / "cache" / "songs")  # the audio is gone, and opening any .wav would raise besides
    opened: list[str] = []
    real_open = builtins.open

    def no_audio(file, *args, **kwargs):
        if str(file).lower().endswith(".wav"):
            opened.append(str(file))
            raise AssertionError(f"fast_train opened an audio file: {file}")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_audio)
    fast = cfg.model_copy(update={"mode": "fast_train", "train_batch_size": 1, "epochs": 2})  # batch and epochs free
    ctx = RunContext.local(tmp_path / "fast", monitor=MONITOR)
    run(fast, ctx)
    ctx.flush()
    assert opened == []
    assert max(s for s, _ in ctx.backend.series("train/loss")) == 8  # 2 songs x 2 chunks, batch 1, 2 epochs
    # validated on the excerpts process_data saved: the same songs, so the same mixture baseline
    assert last(ctx, "valid/si_sdr_vocals_mixture") == pytest.approx(last(first, "valid/si_sdr_vocals_mixture"))
    assert any(kind == "data" and "fast_train from" in m for kind, m in ctx.backend.events)
    scores = evaluate(fast, ctx.checkpoints.latest()["state"], None, ctx)  # the checkpoint page's evaluate too
    assert "valid/si_sdr_vocals" in scores and opened == []

    changed = fast.model_copy(update={"n_chunks_per_song": 3, "F": 32})
    with pytest.raises(DataError, match="no process_data run has saved tensors"):
        run(changed, RunContext.local(tmp_path / "changed", monitor=MONITOR))
    folder = saved[0].split("tensors saved in ")[1].split(" (")[0]
    with pytest.raises(DataError) as err:
        run(changed.model_copy(update={"processed_data": folder}), RunContext.local(tmp_path / "named", monitor=MONITOR))
    assert [p.split(":")[0] for p in err.value.problems] == ["F", "n_chunks_per_song"]


def test_fast_train_without_process_data_says_what_to_do(tmp_path):
    from workbench.tasks.spleeter.data import DataError

    with pytest.raises(DataError, match="Run once with mode: process_data"):
        run(tiny_cfg(tmp_path / "cache", mode="fast_train"), RunContext.local(tmp_path / "run", monitor=MONITOR))
    assert not (tmp_path / "cache" / "songs").exists()  # it did not generate songs either
