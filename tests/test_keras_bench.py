"""benchmarks/keras_side_by_side.py and its Keras server: arguments, protocol, and the
whole run with a numpy stand-in for Keras (no TensorFlow needed). The one test that
builds the Keras model skips where the TensorFlow venv is absent (CI has none)."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TF_PYTHON = Path("/work/venv-tf/bin/python")


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


sbs = _load("keras_side_by_side", ROOT / "benchmarks" / "keras_side_by_side.py")
proto = _load("benchprotocol", ROOT / "benchmarks" / "keras" / "benchprotocol.py")


def test_arguments() -> None:
    args = sbs.parse_args([])
    assert args.batches == [1, 8, 32] and args.threads == 2 and args.rounds == 3
    assert args.keras_variants == ["fp32", "fp32-xla", "bf16", "bf16-xla"]
    # fp32 is every ratio's reference: always measured
    assert sbs.parse_args(["--keras-variants", "bf16-xla"]).keras_variants == ["fp32", "bf16-xla"]
    assert sbs.parse_args(["--batches", "4,16"]).batches == [4, 16]


@pytest.mark.parametrize(
    "argv",
    [["--batches", "0,8"], ["--batches", "eight"], ["--keras-variants", "fp16"], ["--rounds", "0"], ["--threads", "0"]],
)
def test_bad_arguments_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        sbs.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_batches_cut_and_tile() -> None:
    frames = np.arange(5)[:, None, None, None].repeat(3, -1).astype(np.uint8)
    cut = proto.batches_of(frames, 2)
    assert [b[:, 0, 0, 0].tolist() for b in cut] == [[0, 1], [2, 3]]
    tiled = proto.batches_of(frames[:3], 8)
    assert len(tiled) == 1 and tiled[0][:, 0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    with pytest.raises(ValueError):
        proto.batches_of(frames[:0], 1)


def test_time_batches_counts_only_timed_frames() -> None:
    calls: list[int] = []
    frames = np.zeros((10, 2, 2, 3), np.uint8)
    n, dt = proto.time_batches(lambda b: calls.append(len(b)), frames, 4, min_frames=10, min_seconds=0.0, warmup=2)
    assert n == 12 and len(calls) == 2 + 3 and dt >= 0.0  # 2 untimed, then 3 batches of 4 for >= 10 frames
    calls.clear()
    t0 = time.perf_counter()
    n, dt = proto.time_batches(lambda b: time.sleep(0.01), frames, 1, min_frames=1, min_seconds=0.1)
    assert dt >= 0.1 and time.perf_counter() - t0 >= dt and n >= 5


def test_serve_answers_every_line_and_survives_errors() -> None:
    fin = io.StringIO('{"cmd": "echo", "x": 1}\nnot json\n{"cmd": "fail"}\n[1]\n{"cmd": "quit"}\n{"cmd": "echo"}\n')
    fout = io.StringIO()

    def handler(req: dict[str, object]) -> dict[str, object]:
        if req["cmd"] == "fail":
            raise ValueError("no such thing\nsecond line")
        return {"ok": True, "x": req.get("x")}

    proto.serve(handler, fin, fout)
    replies = [proto.recv(io.StringIO(line + "\n")) for line in fout.getvalue().splitlines()]
    assert replies[0] == {"ok": True, "x": 1}
    assert replies[1]["ok"] is False and "not a JSON line" in replies[1]["error"]
    assert replies[2] == {"ok": False, "error": "ValueError: no such thing"}  # one line
    assert replies[3]["ok"] is False and "not a JSON object" in replies[3]["error"]
    assert replies[4] == {"ok": True}
    assert len(replies) == 5  # nothing answered after quit


def test_stub_server_over_a_pipe(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    npy = tmp_path / "frames.npy"
    np.save(npy, frames)
    server = sbs.KerasServer(sys.executable, stub=True)
    try:
        setup = server.call({"cmd": "setup", "frames": str(npy), "variants": ["fp32", "bf16"], "batches": [1, 4]})
        assert setup["ok"] and "stub" in setup["versions"]
        r = server.call(proto.bench_request("bf16", 4, 10, 0.0))
        assert r["frames"] == 12 and r["fps"] == pytest.approx(r["frames"] / r["seconds"])
        with pytest.raises(
            sbs.KerasServerError, match="refused 'bench': ValueError: Keras variant 'fp32-xla' was not set up"
        ):
            server.call(proto.bench_request("fp32-xla", 1, 1, 0.0))  # not set up
        assert server.call(proto.bench_request("fp32", 1, 3, 0.0))["frames"] == 3  # still answering
        bad = tmp_path / "bad.npy"
        np.save(bad, frames.astype(np.float32))
        with pytest.raises(sbs.KerasServerError, match="expected uint8"):
            server.call({"cmd": "setup", "frames": str(bad)})
    finally:
        server.close()
    assert server.proc.returncode == 0


def test_a_server_that_dies_is_named(tmp_path: Path) -> None:
    with pytest.raises(sbs.KerasServerError, match="no TensorFlow venv there"):
        sbs.KerasServer(str(tmp_path / "no-python"))
    server = sbs.KerasServer(sys.executable, stub=True)
    server.proc.kill()
    server.proc.wait()
    with pytest.raises(sbs.KerasServerError, match="the Keras server exited"):
        server.call({"cmd": "setup", "frames": "x.npy"})


@pytest.mark.slow
def test_whole_run_with_the_stub(tiny_model: Path, synthetic_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    argv = ["--stub", "--tf-python", sys.executable, "--model", str(tiny_model), "--clip", str(synthetic_clip)]
    argv += ["--rounds", "2", "--batches", "1,4", "--min-seconds", "0", "--min-frames", "4", "--threads", "1"]
    argv += ["--keras-variants", "fp32,bf16-xla", "--out", str(out)]
    import torch

    threads = torch.get_num_threads()
    try:
        assert sbs.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    text = out.read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    # Keras fp32 and bf16-xla, lusviewer fp32 and bf16, at 2 batches; the engine once
    assert len(rows) == 2 * 4 + 1
    assert sum("1.00x (reference)" in r for r in rows) == 2
    engine = [r for r in rows if "engine end to end" in r]
    assert len(engine) == 1 and "(vs batch 4)" in engine[0]  # its batch (32) was not measured: the largest is
    assert "frames: 40 of 1 clip(s)" in text
    assert "- lusviewer bf16 autocast: " in text and "of 40 frames" in text  # the label comparison ran


def _tf_or_skip() -> None:
    if not TF_PYTHON.is_file():
        pytest.skip(f"no TensorFlow venv at {TF_PYTHON} (benchmarks/keras/requirements.txt makes one)")
    probe = subprocess.run([str(TF_PYTHON), "-c", "import tensorflow, keras"], capture_output=True, timeout=120)
    if probe.returncode:
        pytest.skip(f"tensorflow is not importable in {TF_PYTHON}")


KERAS_SIDE = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from hybrid_keras import build_model, parameter_counts, port_weights
model = build_model(128)
print("trainable", parameter_counts(model)["trainable"])
with np.load(sys.argv[2]) as npz:
    print("ported", port_weights(model, {k: npz[k] for k in npz.files}))
frames = np.load(sys.argv[3]).astype(np.float32) / 255.0
np.save(sys.argv[4], np.asarray(model(frames, training=False)[0]))
"""


@pytest.mark.slow
def test_keras_rendition_is_lusviewers_cnn(tmp_path: Path) -> None:
    """Same trainable parameter count and, with lusviewer's weights ported, the same
    class probabilities on the same frames: the same network, layer for layer."""
    _tf_or_skip()
    import torch

    from lusviewer.model.hybrid import HybridCNN, ModelConfig, count_parameters
    from lusviewer.model.preprocess import to_model_input

    torch.manual_seed(0)
    cnn = HybridCNN(ModelConfig(variant="cnn")).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so that a mix-up shows
        for m in cnn.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in cnn.state_dict().items() if v.is_floating_point()})
    frames = np.random.default_rng(0).integers(0, 255, (4, 128, 128, 3), dtype=np.uint8)
    np.save(tmp_path / "frames.npy", frames)
    with torch.inference_mode():
        expected = torch.softmax(cnn(to_model_input(frames)).logits, 1).numpy()
    files = [str(tmp_path / name) for name in ("w.npz", "frames.npy", "probs.npy")]
    proc = subprocess.run(
        [str(TF_PYTHON), "-c", KERAS_SIDE, str(ROOT / "benchmarks" / "keras"), *files],
        capture_output=True,
        text=True,
        timeout=600,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"trainable {count_parameters(cnn)}" in proc.stdout
    buffers = sum(b.numel() for n, b in cnn.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert f"ported {count_parameters(cnn) + buffers}" in proc.stdout
    got = np.load(tmp_path / "probs.npy")
    assert np.abs(got - expected).max() < 1e-4
