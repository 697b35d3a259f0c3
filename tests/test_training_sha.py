"""A ``--tiny`` training run gives the very weights it gave before training/ was
restructured (issue 14): same seeds, same random draws in the same order, same
stages. The digests were recorded on the code before the restructuring.

Pinned for the comparison: one torch thread (``threads=1``, which also keeps stage 1's
thread tuner of issue 18 off: with ``threads=0`` the weights would depend on which
thread count the timing chose) and float32 (no bf16 autocast); the
digests hold for the torch build and the CPU kernels (``get_cpu_capability``) they were
recorded with: the same code gives other weights on an AVX512 CPU than on an AMX one.
Digests were recorded on the unmodified code for both; elsewhere the test skips, saying
so."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from test_split import _old_split
from test_training import _tiny_config, blues_like_folder

from lusviewer.training.train import run_training

RECORDED_WITH = "2.14.1+cu130"

# Digests of the tensors (name, dtype, shape, bytes) and of the card's metrics and epochs.
RECORDED = {
    # A Xeon with AMX (the session of the restructuring).
    "AMX": {
        "frame": {
            "model": "ef2f655e386c22f3c0236eff4cb3b58739b813df0eddd5f0f85f456a4e8fa848",
            "densenet": "0d3db9aea43eb3ef2512628d21e4387d19b2664fad7c84ce9af84f37bbb66648",
            "card": "22677601da0ff60801f815f70c8e9e4f78b04f786e1bc20cb5a27d9dc4e24763",
        },
        "mil": {
            "model": "a2fd67da92cc5ab8dc97053c541f62054c35fc40f4296375949a321e8b32f239",
            "card": "d600a049385d906e5a82e275017f3125d353ce2509963d69da286d091d110110",
        },
        "crossval": {
            "weights": "bfd75e997d2e564265f31fd4f202ffc133b6bf205ec4c6b8e32840267a194af4",
            "results": "69416336cdcaba3d15b798b55dc3eb2efc10829776f38b4bb89c59480ba0a470",
        },
    },
    # An AMD EPYC with AVX512 (no AMX): the code of commit ee0f423 (before issue 15), run there.
    "AVX512": {
        "frame": {
            "model": "6addeb88bd07b18a1260ac12dd593f00edf72067abef4e4d7f74c2bfcf5a0997",
            "densenet": "e072b6bf580600cba1493813af580623cea41f6c90df07aaab9e83ad4debf4a5",
            "card": "22677601da0ff60801f815f70c8e9e4f78b04f786e1bc20cb5a27d9dc4e24763",
        },
        "mil": {
            "model": "80d6761bc63e99e409edea803e37cb56f43f89a17ae5da8a72d8e5aa6c419782",
            "card": "384ba88e722b39bc5f1e5e55759ac32ec7b9ba56a26eea8291bd85cb95596980",
        },
        "crossval": {
            "weights": "bc369c784298bc64b768ee99cc2e582133b285031d8665724b20699ae757f3df",
            "results": "69416336cdcaba3d15b798b55dc3eb2efc10829776f38b4bb89c59480ba0a470",
        },
    },
}


def _expected(kind: str) -> dict[str, str]:
    """The digests recorded on this kind of CPU; skips (saying why) where none were."""
    if torch.__version__ != RECORDED_WITH:
        pytest.skip(f"digests recorded with torch {RECORDED_WITH}; this is torch {torch.__version__}")
    cpu = torch.backends.cpu.get_cpu_capability()
    if cpu not in RECORDED:
        pytest.skip(f"digests recorded on {', '.join(RECORDED)} CPUs; this one's kernels are {cpu}")
    return RECORDED[cpu][kind]


def _tensor_digest(path: Path) -> str:
    """sha256 of a safetensors file's tensors (its metadata names temporary paths)."""
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for key, value in sorted(load_file(str(path)).items()):
        h.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        h.update(value.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _card_digest(card_path: Path) -> str:
    card = json.loads(card_path.read_text())
    kept = {"metrics": card["metrics"], "epochs": card["training"]["epochs"], "split": card["training"]["split"]}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


@pytest.fixture()
def one_thread(monkeypatch: pytest.MonkeyPatch) -> object:
    """One torch thread, and the validation split as it was when the digests were recorded.

    The split on very small data changed since (``training.data.split_by_group``: the tiny
    folder's 8 patients now give 2 validation patients); ``tests/test_split.py`` tests that
    change and that the split on data of normal size is the old one. Here the old rule keeps
    the digests a test of the training loop alone."""
    for module in ("train", "crossval", "pretrain"):
        monkeypatch.setattr(f"lusviewer.training.{module}.split_by_group", _old_split)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _digests(tmp_path: Path, **settings: object) -> dict[str, str]:
    data = blues_like_folder(tmp_path / "blues")
    cfg = _tiny_config(data, tmp_path, threads=1, bf16=False, **settings)
    card = run_training(cfg)
    got = {"model": _tensor_digest(card.with_suffix(".safetensors")), "card": _card_digest(card)}
    densenet = tmp_path / "work" / "pretrain" / "densenet.safetensors"
    if densenet.is_file():
        got["densenet"] = _tensor_digest(densenet)
    print(json.dumps(got))
    return got


def test_tiny_run_with_every_stage_gives_the_recorded_weights(tmp_path: Path, one_thread: object) -> None:
    """Stages 1-3 with the frame loss and Adam, after a one-epoch SimSiam pretraining."""
    expected = _expected("frame")
    got = _digests(
        tmp_path, cnn_epochs=2, lstm_epochs=2, e2e_epochs=1, e2e_seq_len=4, e2e_batch_size=2, pretrain_epochs=1
    )
    assert got == expected


def test_tiny_run_with_mil_loss_and_adamw_gives_the_recorded_weights(tmp_path: Path, one_thread: object) -> None:
    """Stages 1-2 with the MIL loss and AdamW's warm-up and cosine schedule (epoch-bound)."""
    expected = _expected("mil")
    got = _digests(tmp_path, cnn_epochs=2, lstm_epochs=2, loss="mil", optimizer="adamw", batch_size=8)
    assert got == expected


def test_tiny_crossval_gives_the_recorded_weights_and_results(tmp_path: Path, one_thread: object) -> None:
    """Two folds of the CNN and CNN+LSTM variants (the latter reusing the former's stage 1)."""
    from dataclasses import replace

    from lusviewer.training.crossval import run_crossval

    expected = _expected("crossval")
    data = blues_like_folder(tmp_path / "blues")
    cfg = replace(_tiny_config(data, tmp_path, threads=1, bf16=False, cnn_epochs=1), out=str(tmp_path / "cv"))
    run_crossval(cfg, k=2, variants=("cnn", "cnn_lstm"))
    weights, results = hashlib.sha256(), hashlib.sha256()
    for path in sorted((tmp_path / "cv").glob("fold*/*/*_best.safetensors")):
        weights.update(f"{path.parent.parent.name}/{path.parent.name}/{path.name}|{_tensor_digest(path)}".encode())
    for path in sorted((tmp_path / "cv").glob("fold*/*/result.json")):
        record = json.loads(path.read_text())
        for key in ("elapsed_s", "machine", "repeat", "fold_seed"):  # the last two recorded since issue 15
            record.pop(key)
        for clip in record["clips"]:
            clip["clip"] = Path(clip["clip"]).name
            for key in ("p_mean", "findings", "aux"):  # recorded since issue 15 (the weights are unchanged)
                clip.pop(key, None)
        results.update(json.dumps(record, sort_keys=True).encode())
    got = {"weights": weights.hexdigest(), "results": results.hexdigest()}
    print(json.dumps(got))
    assert got == expected
