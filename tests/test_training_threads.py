"""The stage-1 loop's thread count (issue 18): timed, not assumed, where the user left
it to the code."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from lusviewer.training.loop import ThreadTuner, thread_tuner


class FakeCPU:
    """A clock whose steps take what ``seconds[threads]`` says (changeable mid-run)."""

    def __init__(self, seconds: dict[int, float]) -> None:
        self.seconds = seconds
        self.now = 0.0
        self.threads = 0
        self.history: list[int] = []

    def clock(self) -> float:
        return self.now

    def apply(self, threads: int) -> None:
        self.threads = threads

    def run(self, tuner: ThreadTuner, steps: int) -> list[int]:
        used = []
        for _ in range(steps):
            used.append(tuner.begin())
            assert self.threads == used[-1]
            self.now += self.seconds[self.threads]
            tuner.end()
        return used


def test_busy_cpu_keeps_one_thread_and_probes_ever_less_often() -> None:
    cpu = FakeCPU({1: 0.5, 2: 4.0})  # as measured under load: 2 threads 8x slower
    tuner = ThreadTuner(2, clock=cpu.clock, apply=cpu.apply, load=None)
    used = cpu.run(tuner, 400)
    assert used[:3] == [1, 1, 1]
    probes = [i for i, t in enumerate(used) if t == 2]
    assert probes and all(used[i + 1] == 1 for i in probes)  # each probe lost: back to 1 thread
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert gaps == sorted(gaps) and gaps[-1] > 2 * gaps[0]  # backing off
    assert len(probes) * 4.0 < 0.2 * cpu.now  # probing costs under a fifth of the time
    assert tuner.switches == []


def test_idle_cpu_moves_to_more_threads_and_back_when_the_load_comes() -> None:
    cpu = FakeCPU({1: 1.0, 2: 0.6})
    tuner = ThreadTuner(2, clock=cpu.clock, apply=cpu.apply, load=None)
    used = cpu.run(tuner, 30)
    assert used[-20:].count(2) >= 18 and len(tuner.switches) == 1  # 1 thread only in a probe now and then
    cpu.seconds = {1: 1.0, 2: 6.0}  # another process starts
    used = cpu.run(tuner, 40)
    assert used[-10:] == [1] * 10 and len(tuner.switches) == 2


def test_a_single_slow_step_of_the_current_count_does_not_switch() -> None:
    cpu = FakeCPU({1: 1.0, 2: 1.05})  # within 10 %: stay
    tuner = ThreadTuner(2, clock=cpu.clock, apply=cpu.apply, load=None)
    assert set(cpu.run(tuner, 60)[-5:]) == {1} and tuner.switches == []


def test_a_busy_load_average_spares_the_probes_of_more_threads() -> None:
    """While other processes keep the second core busy (load average minus the loop's own
    thread above 0.5 on 2 cores) more threads are not tried; once it falls, they are."""
    cpu = FakeCPU({1: 1.0, 2: 0.6})
    load = [3.0]
    tuner = ThreadTuner(2, clock=cpu.clock, apply=cpu.apply, load=lambda: load[0])
    assert cpu.run(tuner, 100) == [1] * 100
    load[0] = 1.2  # the loop's own thread and a little else
    used = cpu.run(tuner, 20)
    assert used[-10:].count(2) >= 9 and len(tuner.switches) == 1


def test_no_tuner_where_the_threads_are_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert thread_tuner(0, cpu) is not None
        assert thread_tuner(2, cpu) is None  # --threads 2
        assert thread_tuner(0, torch.device("meta")) is None  # not the CPU
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert thread_tuner(0, cpu) is None
        monkeypatch.delenv("OMP_NUM_THREADS")
        torch.set_num_threads(1)
        assert thread_tuner(0, cpu) is None  # nothing to choose from
    finally:
        torch.set_num_threads(before)


def test_stage_1_with_threads_left_to_the_code_tunes_them_and_restores_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tiny run with ``threads=0``: stage 1 runs under the tuner (the progress bar
    names the count of each step) and leaves torch's thread count as it found it."""
    from test_training import _tiny_config, blues_like_folder

    from lusviewer.training.train import run_training

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cfg = _tiny_config(blues_like_folder(tmp_path / "blues"), tmp_path, variant="cnn", threads=0, cnn_epochs=1)
        run_training(cfg)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    bar = capsys.readouterr().err
    assert "CNN epoch 1" in bar and "thr=1" in bar  # the tuner starts on one thread
