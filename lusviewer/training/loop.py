"""The run layer every training stage shares: device and autocast, distributed
helpers, class weights, checkpoints of weights, optimiser and random streams, the
learning-rate schedule, the run's ``state.json``, and :class:`StageLoop`, the
resumable epoch loop of stage 1 (CNN), stage 3 (end to end) and the pretraining."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from lusviewer.training.stopping import BUDGET, budget_warning, stop_reason
from lusviewer.wording import count


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def dist_info() -> tuple[int, int]:
    """(rank, world size) under torchrun / DistributedDataParallel, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> str:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): NCCL on CUDA
    (one GPU per process, ``cuda:LOCAL_RANK``), gloo on CPU. Returns the device to use."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def all_agree(flag: bool) -> bool:
    """True only if every process says True (keeps the ranks' loops in step)."""
    import torch.distributed as dist

    if dist_info()[1] == 1:
        return flag
    t = torch.tensor([1 if flag else 0])
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def from_rank0(values: list[float]) -> list[float]:
    """Rank 0's values on every process (the learning rate and stop flag it decided)."""
    import torch.distributed as dist

    if dist_info()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.broadcast(t, src=0)
    return [float(v) for v in t.tolist()]


def device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def autocast(enabled: bool, device: torch.device | None = None) -> Any:
    kind = "cpu" if device is None else device.type
    dtype = torch.bfloat16 if kind == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(kind, dtype=dtype, enabled=enabled)


def machine(device: torch.device) -> str:
    """Where a run trained, for the model card and the cross-validation report: the CPU
    threads torch used (``--threads``), not only the cores the machine has."""
    gpu = f"{torch.cuda.get_device_name(device)}, " if device.type == "cuda" else ""
    threads = count(torch.get_num_threads(), "thread")
    return f"{gpu}{threads} on {os.cpu_count()} CPU cores, torch {torch.__version__}"


def batches_per_epoch(n_items: int, batch: int, *, clips: str, frames_per_clip: int, step: str) -> int:
    """How many whole batches of ``batch`` an epoch of ``n_items`` frames gives; ValueError
    where none: an epoch without a step would pass for training (a loss of 0) and keep the
    random weights as the trained ones. ``clips`` names what the frames came from and
    ``step`` the kind of step, for the one error line."""
    nb = n_items // batch
    if nb < 1:
        raise ValueError(
            f"{count(n_items, 'training frame' if step == 'training' else 'frame')} per epoch ({clips}, "
            "--frames-per-clip "
            f"{frames_per_clip}) do not fill one batch of {batch}: no {step} step would run; lower --batch-size "
            "or raise --frames-per-clip"
        )
    return nb


def class_weights(scores: Sequence[int], n: int = 4) -> torch.Tensor:
    counts = np.bincount(np.asarray(scores), minlength=n).astype(np.float64)
    w = counts.sum() / np.maximum(counts, 1) / n
    return torch.tensor(w, dtype=torch.float32)


class ThreadTuner:
    """The intra-op thread count of a CPU training loop, chosen by timing its steps
    (``--threads 0``, the default, where ``OMP_NUM_THREADS`` does not pin it).

    torch's OpenMP threads wait for each other at the end of every operator. On a CPU
    that other busy processes share, one of them is often descheduled, and each of the
    thousands of operators of a training step then waits out a scheduler time slice:
    on the 2-core development machine (load 4-10), stage 1 of the compact CNN at 64 px
    ran 6-9 frames/s on 2 threads and 50-80 on 1. On an idle machine the threads win.

    So the loop runs on ``fewest`` threads first, times every step, and now and then
    (every ``probe_s`` seconds, twice as long after each probe the other count loses,
    up to ``max_probe_s``) runs one step on the other count, keeping whichever is
    faster (by 10 %, against the median of its last five steps). A probe costs one step
    at the slower count, so more threads are not tried while ``load()`` (the 1-minute
    load average) says that other processes keep the cores they would need busy. The
    weights then depend slightly on the timing (oneDNN's reductions are split by
    thread): pin ``--threads N`` for bit-reproducible runs.
    """

    def __init__(
        self,
        most: int,
        *,
        fewest: int = 1,
        probe_s: float = 5.0,
        max_probe_s: float = 300.0,
        clock: Callable[[], float] = time.perf_counter,
        apply: Callable[[int], None] = torch.set_num_threads,
        load: Callable[[], float] | None = lambda: os.getloadavg()[0],
    ) -> None:
        self.choices = (fewest, most)
        self.current = fewest
        self.first_probe_s = probe_s
        self.probe_s = probe_s
        self.max_probe_s = max_probe_s
        self.clock = clock
        self.apply = apply
        self.load = load
        self.recent: list[float] = []  # seconds of the current count's last steps
        self.steps = 0
        self.probing = False
        self.last_probe = clock()
        self.t0 = 0.0
        self.switches: list[str] = []

    @property
    def active(self) -> bool:
        return self.choices[0] != self.choices[1]

    def begin(self) -> int:
        """Before a step: set (and return) the thread count it runs on."""
        now = self.clock()
        other = self.choices[1] if self.current == self.choices[0] else self.choices[0]
        # the first step (kernel set-up) is not timed; probe once the current count has 2 timed steps
        self.probing = self.active and len(self.recent) >= 2 and now - self.last_probe >= self.probe_s
        if self.probing and other > self.current and self.load is not None:
            others = self.load() - self.current  # runnable tasks of other processes
            if others > other - self.current - 0.5:  # no idle cores for the extra threads: look again later
                self.probing, self.last_probe = False, now
        threads = other if self.probing else self.current
        self.apply(threads)
        self.t0 = self.clock()
        return threads

    def end(self) -> None:
        """After the step :meth:`begin` started."""
        took = self.clock() - self.t0
        self.steps += 1
        if not self.probing:
            if self.steps > 1:
                self.recent = [*self.recent[-4:], took]
            return
        self.last_probe = self.clock()
        usual = sorted(self.recent)[len(self.recent) // 2]
        other = self.choices[1] if self.current == self.choices[0] else self.choices[0]
        if took < 0.9 * usual:
            self.switches.append(f"{other} threads ({took:.2f} s/step) beat {self.current} ({usual:.2f} s/step)")
            self.current, self.recent, self.probe_s = other, [took], self.first_probe_s
        else:
            self.probe_s = min(2 * self.probe_s, self.max_probe_s)


def thread_tuner(threads: int, device: torch.device) -> ThreadTuner | None:
    """A :class:`ThreadTuner` where the thread count is left to the code: ``threads`` 0 on
    the CPU, ``OMP_NUM_THREADS`` unset, and more than one thread to choose from."""
    most = torch.get_num_threads()
    if threads or device.type != "cpu" or "OMP_NUM_THREADS" in os.environ or most < 2:
        return None
    return ThreadTuner(most)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module, *, max_norm: float) -> None:
    """One optimiser step with the gradient norm clipped."""
    opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    nn.utils.clip_grad_norm_(module.parameters(), max_norm)
    opt.step()


def _replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_state(path: Path, module: nn.Module) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    _replace_atomically(path, lambda tmp: save_file(tensors, str(tmp)))


def load_state(path: Path, module: nn.Module) -> None:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)))


def save_optim(path: Path, opt: torch.optim.Optimizer) -> None:
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors = {
        f"{pid}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).contiguous().cpu()
        for pid, st in sd["state"].items()
        for k, v in st.items()
    }
    meta = {"param_groups": json.dumps(sd["param_groups"])}
    _replace_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_optim(path: Path, opt: torch.optim.Optimizer) -> None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        groups = json.loads((fh.metadata() or {})["param_groups"])
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key in fh.keys():  # noqa: SIM118  (safe_open is not iterable)
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = fh.get_tensor(key)
    opt.load_state_dict({"state": state, "param_groups": groups})


def rng_path(work: Path, stage: str) -> Path:
    return work / f"{stage}_rng_rank{dist_info()[0]}.json"


def save_rng(path: Path, rng: np.random.Generator, gen: torch.Generator, dev: torch.device, *, epoch: int) -> None:
    """Save the random streams a stage draws from (frame sampling, augmentation, dropout)
    beside its checkpoint, so that a resumed run draws what an uninterrupted one would
    have drawn. One file per rank: each rank augments with its own generator."""

    def enc(t: torch.Tensor) -> str:
        return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")

    state = {
        "epoch": epoch,  # the epoch the streams stand after: a resume checks it against the state file
        "numpy": rng.bit_generator.state,
        "generator": enc(gen.get_state()),
        "torch": enc(torch.get_rng_state()),
    }
    if dev.type == "cuda":
        state["cuda"] = enc(torch.cuda.get_rng_state(dev))
    _replace_atomically(path, lambda tmp: tmp.write_text(json.dumps(state)))


def load_rng(path: Path, rng: np.random.Generator, gen: torch.Generator, dev: torch.device, *, epoch: int) -> bool:
    """Restore what :func:`save_rng` saved after ``epoch``; False (streams left as
    seeded) where a checkpoint of an older lusviewer has none, or the run stopped
    between writing the streams and the state."""
    if not path.is_file():
        return False

    def dec(s: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)

    state = json.loads(path.read_text())
    if state.get("epoch") != epoch:
        return False
    rng.bit_generator.state = state["numpy"]
    gen.set_state(dec(state["generator"]))
    torch.set_rng_state(dec(state["torch"]))
    if dev.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(dec(state["cuda"]), dev)
    return True


def schedule_fraction(elapsed_s: float, budget_s: float, progress_epochs: float, epochs: int) -> float:
    """Progress (0 to 1) through a cosine schedule: by epochs, unless the wall-clock
    budget will stop the run first (projected from the pace so far), then by the clock.
    So an epoch-bound run's learning rates never depend on timing, and stay exactly
    reproducible."""
    if progress_epochs <= 0:
        return 0.0
    by_epochs = progress_epochs / epochs
    if elapsed_s / progress_epochs * epochs > budget_s:  # the budget binds
        return min(1.0, max(elapsed_s / budget_s, by_epochs))
    return min(1.0, by_epochs)


class RunState:
    """Resumable progress of one training run, kept as JSON in the work dir."""

    def __init__(self, work: Path) -> None:
        self.path = work / "state.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def save(self) -> None:
        if dist_info()[0] != 0:  # one writer under DDP
            return
        _replace_atomically(self.path, lambda tmp: tmp.write_text(json.dumps(self.data, indent=2)))


@dataclass(frozen=True)
class StageFiles:
    """A stage's checkpoints: its last weights, optimiser and random streams (and best weights)."""

    last: Path
    optim: Path
    rng: Path
    best: Path | None = None

    @classmethod
    def named(cls, work: Path, stage: str) -> StageFiles:
        """``<stage>_last/_optim/_best.safetensors`` and ``<stage>_rng_rank<r>.json`` in ``work``."""
        return cls(
            last=work / f"{stage}_last.safetensors",
            optim=work / f"{stage}_optim.safetensors",
            rng=rng_path(work, stage),
            best=work / f"{stage}_best.safetensors",
        )


class StageLoop:
    """One resumable stage of a run: its entry ``name`` in ``state.json`` (``epoch``,
    ``elapsed_s`` and what the stage adds), its checkpoint files, and its epochs, run
    until ``epochs`` or ``minutes`` of wall clock (summed over resumes) run out."""

    def __init__(
        self, run: RunState, name: str, files: StageFiles, *, epochs: int, minutes: float, fresh: dict[str, Any]
    ) -> None:
        self.run = run
        self.name = name
        self.files = files
        self.st: dict[str, Any] = run.data.setdefault(name, fresh)
        self.max_epochs = epochs
        self.budget_s = minutes * 60
        self.t_start = time.time() - float(self.st.get("elapsed_s", 0.0))

    @property
    def epoch(self) -> int:
        return int(self.st["epoch"])

    def elapsed(self) -> float:
        return time.time() - self.t_start

    def resume_weights(self, module: nn.Module, opt: torch.optim.Optimizer, *, need_optim: bool = False) -> bool:
        """Load the last checkpoint of an interrupted stage into ``module`` and ``opt``."""
        if self.epoch > 0 and self.files.last.is_file() and (self.files.optim.is_file() or not need_optim):
            load_state(self.files.last, module)
            load_optim(self.files.optim, opt)
            return True
        return False

    def resume_streams(self, rng: np.random.Generator, gen: torch.Generator, dev: torch.device) -> bool:
        """Restore the random streams saved with the last checkpoint (False: none saved)."""
        return load_rng(self.files.rng, rng, gen, dev, epoch=self.epoch)

    def epochs(self, more: Callable[[], bool] = lambda: True, *, agree: bool = False) -> Iterator[int]:
        """The epochs still to run (each the number of epochs done before it), while the
        epoch cap and the budget allow and ``more()`` says so; ``agree``: only while every
        process does (under torchrun). The loop body ends each with :meth:`end_epoch`."""
        self.t_start = time.time() - float(self.st["elapsed_s"])
        while True:
            go = self.epoch < self.max_epochs and self.elapsed() < self.budget_s and more()
            if not (all_agree(go) if agree else go):
                self._note_stop()
                return
            yield self.epoch

    def _note_stop(self) -> None:
        """Record why the stage ended (``stopped_by``) and say so in one line where the
        wall-clock budget cut it short of its epochs."""
        why = stop_reason(self.epoch, self.max_epochs, out_of_time=self.elapsed() >= self.budget_s)
        self.st["stopped_by"] = why
        if why == BUDGET:
            log(budget_warning(self.name, self.budget_s / 60, self.epoch, self.max_epochs))

    def bar(self, total: int, desc: str, *, disable: bool = False) -> tqdm[Any]:
        return tqdm(
            total=total,
            desc=desc,
            unit="batch",
            disable=disable,
            file=sys.stderr,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
        )

    def end_epoch(self) -> None:
        self.st["epoch"] += 1
        self.st["elapsed_s"] = self.elapsed()

    def save_streams(self, rng: np.random.Generator, gen: torch.Generator, dev: torch.device) -> None:
        save_rng(self.files.rng, rng, gen, dev, epoch=self.epoch)

    def save_last(self, module: nn.Module, opt: torch.optim.Optimizer) -> None:
        """The last weights and optimiser state, then ``state.json``."""
        save_state(self.files.last, module)
        save_optim(self.files.optim, opt)
        self.run.save()

    def finish(self) -> None:
        self.st["done"] = True
        self.run.save()
