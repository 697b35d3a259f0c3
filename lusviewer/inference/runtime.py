"""Where the per-frame CNN runs: plain PyTorch, or OpenVINO on the CPU (the default where
it is installed: the ``fast`` extra, ``pip install "lusviewer[fast]"``).

Measured side by side (docs/performance.md, "Scoring engine"): on a 2-core AVX512-BF16
CPU the OpenVINO CPU runtime runs the hybrid CNN about three times as fast as PyTorch's
bf16 autocast, with the same frame labels as the PyTorch fp32 path on >= 99 % of frames.

* ``torch``: the model as loaded, autocast to the engine's precision (the path of the
  engine before OpenVINO; always used on CUDA, for Grad-CAM and for reconstructions).
* ``openvino``: the CNN with its foldable BatchNorms folded
  (:func:`~lusviewer.model.fuse.fold_batchnorm`), converted once to an OpenVINO model,
  cached on disk (keyed by the weights' sha256, the architecture, the OpenVINO and
  torch versions), compiled for the CPU in bf16 where the engine's precision is bf16,
  else f32, on the first batch (so that its threads are the scoring thread's). The
  first load of a model converts it (tens of seconds on 2 cores); later loads read the
  cache; compiling takes a few seconds.
* ``auto``: ``openvino`` on the CPU where it imports and converts, else ``torch``.

Choose with the engine's ``runtime`` argument, or the ``LUSVIEWER_RUNTIME`` environment
variable (``torch`` forces the plain path), or the card's ``inference.runtime``; in that
order. The cache folder is ``LUSVIEWER_CACHE_DIR`` or the user cache folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lusviewer.model.fuse import fold_batchnorm
from lusviewer.model.hybrid import CNNOutput, ModelConfig

log = logging.getLogger("lusviewer")

RUNTIMES = ("auto", "torch", "openvino")
RUNTIME_ENV = "LUSVIEWER_RUNTIME"
CACHE_ENV = "LUSVIEWER_CACHE_DIR"
_FORMAT = 1  # bump when what is exported changes (the cache keys carry it)

CNNRunner = Callable[[Tensor], CNNOutput]


class RuntimeUnavailable(Exception):
    """The optional runtime is not installed or could not take the model."""


def requested_runtime(runtime: str | None, card_inference: dict[str, Any]) -> str:
    """The runtime asked for: the argument, else ``LUSVIEWER_RUNTIME``, else the card's
    ``inference.runtime``, else ``auto``. Raises ValueError for an unknown name."""
    name = runtime or os.environ.get(RUNTIME_ENV) or str(card_inference.get("runtime") or "") or "auto"
    name = name.strip().lower()
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; expected one of {RUNTIMES}")
    return name


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except Exception:
        return False
    return True


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("lusviewer")) / "runtime"


class _Outputs(nn.Module):
    """The CNN with a plain tuple of outputs (export formats take no NamedTuples)."""

    def __init__(self, cnn: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.cnn = cnn
        self.names = names

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        out = self.cnn(x)
        return tuple(getattr(out, n) for n in self.names)


def _output_names(cfg: ModelConfig) -> tuple[str, ...]:
    names = ["logits", "features"]
    if cfg.variant != "densenet":
        names.append("reconstruction")
    if cfg.aux_heads:
        names.append("aux")
    return tuple(names)


class OpenVINORunner:
    """The CNN compiled by OpenVINO for the CPU; called like the torch CNN (fp32 in, fp32 out)."""

    name = "openvino"

    def __init__(
        self,
        cnn: nn.Module,
        cfg: ModelConfig,
        *,
        weights_sha256: str,
        precision: str,
        threads: int | None = None,
        cache: Path | None = None,
    ) -> None:
        try:
            import openvino as ov
        except Exception as exc:
            raise RuntimeUnavailable(f"OpenVINO is not installed ({exc})") from exc
        self.names = _output_names(cfg)
        self.precision = "bf16" if precision == "bf16" else "f32"
        key = json.dumps(
            [_FORMAT, weights_sha256, cfg.to_dict(), ov.__version__, torch.__version__, self.names], sort_keys=True
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        folder = (cache or cache_dir()) / f"openvino-{digest}"
        xml = folder / "cnn.xml"
        core = ov.Core()
        try:
            model = core.read_model(str(xml)) if xml.is_file() else None
        except Exception:  # a damaged cache entry: converted again below
            model = None
        self.converted = model is None
        if model is None:
            model = self._convert(ov, cnn, cfg)
            _save_atomically(ov, model, folder)
        self._ov, self._core, self._model = ov, core, model
        self._threads = threads
        self._request: Any = None
        self.cache_path = folder

    def compile(self) -> None:
        """Compile for the CPU (done by the first call). Deferred so that the compute
        threads are made by the thread that scores, with its priority, and with the
        number of threads torch has then (the viewer loads models with one)."""
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": self.precision,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": int(self._threads or torch.get_num_threads()),
        }
        try:
            compiled = self._core.compile_model(self._model, "CPU", config)
        except Exception as exc:
            raise RuntimeUnavailable(f"OpenVINO could not compile the model for the CPU ({exc})") from exc
        self._request = compiled.create_infer_request()
        self._model = None  # the compiled model holds its own copy of the weights

    @staticmethod
    def _convert(ov: Any, cnn: nn.Module, cfg: ModelConfig) -> Any:
        folded, _ = fold_batchnorm(cnn)
        wrapped = _Outputs(folded.float().cpu(), _output_names(cfg)).eval()
        size = cfg.input_size
        example = torch.rand(2, 3, size, size)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracing warns of Python constants: constants here
                return ov.convert_model(wrapped, example_input=example, input=[(-1, 3, size, size)])
        except Exception as exc:
            raise RuntimeUnavailable(f"OpenVINO could not convert the model ({type(exc).__name__}: {exc})") from exc

    def __call__(self, x: Tensor) -> CNNOutput:
        if self._request is None:
            self.compile()
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        res = self._request.infer({0: arr})
        outs = {n: torch.from_numpy(np.array(res[i], dtype=np.float32)) for i, n in enumerate(self.names)}
        return CNNOutput(outs["logits"], outs["features"], outs.get("reconstruction"), outs.get("aux"))


def _save_atomically(ov: Any, model: Any, folder: Path) -> None:
    """Write the converted model into ``folder`` whole or not at all (a cache that cannot
    be written is only a slower next load)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
        ov.save_model(model, str(tmp / "cnn.xml"), compress_to_fp16=False)
        try:
            tmp.rename(folder)
        except OSError:  # another process wrote it first
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception as exc:
        log.warning("could not cache the converted model in %s (%s); the next load converts it again", folder, exc)
