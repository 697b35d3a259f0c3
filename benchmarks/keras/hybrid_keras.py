"""The paper's per-frame CNN in Keras 3 (TensorFlow), for speed comparisons only.

Dastider, Sadik, Fattah 2021 published partial Keras code (notebook fragments, no
weights); ``../shared/seed`` holds their README and figures (``archi.png``), and
``../shared/docs/hybrid-model.md`` restates the design. This file builds that CNN at
128 px layer for layer as lusviewer's ``HybridCNN`` (``lusviewer/model/hybrid.py``, the
CNN of the shipped ``cnn_lstm`` model), with the same resolution of the design's OPEN
points (feature trader by concatenation, path A's second chain from its first
128-filter conv, refined reconstruction), so that the two frameworks run the same
arithmetic:

* autoencoder (16-8-8 encoder, 8-8-16 decoder, sigmoid reconstruction, refinement);
* depthwise-separable branch (SeparableConv2D 16, 8, 8, each max-pooled);
* two classification paths on concat(frame, reconstruction), fed the decoder's and
  the separable branch's maps at 64 and 32 px;
* DenseNet-201 (``keras.applications``, ``weights=None``: nothing is downloaded) after
  a conv 3->3, global average pool, batchnorm, dense 256;
* head on concat(paths 16384, 16 px maps 4096, DenseNet 256): batchnorm, dense 1024,
  512, 128, 64 (the per-frame feature), dense 4 softmax.

The weights are random (He initialisation) unless lusviewer's are ported
(:func:`port_weights`; ``keras_side_by_side.py`` does, to check that both give the same
probabilities); speed does not depend on them. Trainable
parameters equal lusviewer's ``HybridCNN`` parameters exactly (41,396,483); Keras also
counts BatchNorm's moving mean and variance (274,368 values), which PyTorch keeps as
buffers, not parameters. Feature maps are flattened in channel-first order (a
``Permute`` before each ``Flatten``, no arithmetic) so that the head's weights line up
with PyTorch's one for one.

Run in the TensorFlow virtual environment (never a dependency of lusviewer)::

    /work/venv-tf/bin/python benchmarks/keras/hybrid_keras.py --params
    /work/venv-tf/bin/python benchmarks/keras/hybrid_keras.py --serve   # for keras_side_by_side.py

``--serve --stub`` answers the same protocol with a numpy stand-in for the model (no
TensorFlow), for the tests.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchprotocol import KERAS_VARIANTS, bench_reply, serve, time_batches

#: lusviewer's HybridCNN at 128 px (``parameter_counts`` minus the sequence head).
TORCH_CNN_PARAMETERS = 41_396_483


def _keras() -> Any:
    """Keras, imported by name (this folder is named ``keras`` too: type checkers would take it)."""
    return importlib.import_module("keras")


def build_model(size: int = 128, num_classes: int = 4) -> Any:
    """The hybrid CNN as a Keras functional model: frame in [0, 1] (N, S, S, 3) ->
    [class probabilities (N, 4), features (N, 64), refined reconstruction (N, S, S, 3)].
    Uses the global dtype policy (set ``mixed_bfloat16`` before calling for bf16)."""
    keras = _keras()
    layers = keras.layers

    # Every layer with weights is named after its PyTorch module (``port_weights``).
    def conv(x: Any, c: int, name: str, act: str = "relu") -> Any:
        return layers.Conv2D(c, 3, padding="same", activation=act, kernel_initializer="he_normal", name=name)(x)

    def sep(x: Any, c: int, name: str) -> Any:
        layer = layers.SeparableConv2D(
            c, 3, padding="same", activation="relu", depthwise_initializer="he_normal", name=name
        )
        return layer(x)

    def pool(x: Any) -> Any:
        return layers.MaxPooling2D(2)(x)

    def up(x: Any) -> Any:
        return layers.UpSampling2D(2, interpolation="nearest")(x)

    def cat(xs: list[Any]) -> Any:
        return layers.Concatenate(axis=-1)(xs)

    def flat_chw(x: Any) -> Any:  # PyTorch's flatten order (C, H, W)
        return layers.Flatten()(layers.Permute((3, 1, 2))(x))

    frame = keras.Input((size, size, 3), name="frame")

    # Autoencoder (U-Net-like): encoder 16-8-8, bottleneck 8 at /8, decoder, refinement.
    e128 = conv(frame, 16, "autoencoder.enc1.0")
    e64 = conv(pool(e128), 8, "autoencoder.enc2.0")
    p32 = pool(e64)
    e32 = conv(p32, 8, "autoencoder.enc3.0")
    code = conv(pool(e32), 8, "autoencoder.dec16.0")
    d32 = conv(cat([up(code), p32]), 8, "autoencoder.dec32.0")
    d64 = conv(cat([up(d32), e64]), 16, "autoencoder.dec64.0")
    rec = conv(cat([up(d64), e128]), 3, "autoencoder.out", act="sigmoid")
    refined = conv(cat([rec, frame]), 3, "autoencoder.refine", act="sigmoid")

    # Depthwise-separable branch.
    s64 = sep(pool(sep(frame, 16, "separable.s1")), 8, "separable.s2")
    s32 = sep(pool(s64), 8, "separable.s3")
    s16 = pool(s32)

    # Classification paths with the feature trader's injections (concatenation).
    drop = 0.2
    x6 = cat([frame, refined])
    a = layers.Dropout(drop)(pool(conv(x6, 256, "paths.a1.0")))
    b = layers.Dropout(drop)(pool(conv(x6, 128, "paths.b1.0")))
    a = conv(cat([a, d64, s64]), 128, "paths.a2.0")
    merged = conv(cat([a, b]), 64, "paths.merge.0")
    a_more = layers.Dropout(drop)(conv(conv(a, 128, "paths.a3.0"), 64, "paths.a4.0"))
    m = conv(conv(cat([merged, a_more]), 64, "paths.m1.0"), 32, "paths.m2.0")
    m = layers.Dropout(drop)(pool(m))
    b = pool(layers.Dropout(drop)(conv(conv(b, 64, "paths.b2.0"), 32, "paths.b3.0")))
    paths = flat_chw(conv(conv(cat([m, b, d32, s32]), 32, "paths.f1.0"), 16, "paths.f2.0"))
    f16 = flat_chw(cat([code, s16]))

    # DenseNet-201 branch (its last layer is BN + ReLU, as lusviewer's relu(features)).
    densenet = keras.applications.DenseNet201(include_top=False, weights=None, input_shape=(size, size, 3))
    d = layers.GlobalAveragePooling2D()(densenet(conv(frame, 3, "densenet.stem.0")))
    d = layers.BatchNormalization(epsilon=1e-5, name="densenet.norm")(d)
    d = layers.Dense(256, activation="relu", name="densenet.fc")(layers.Dropout(0.5)(d))

    # Head (lusviewer's nn.Sequential indices as names).
    h = layers.BatchNormalization(epsilon=1e-5, name="head.0")(cat([paths, f16, d]))
    h = layers.Dropout(0.2)(h)
    for i, (width, index) in enumerate(zip((1024, 512, 128), (2, 5, 8), strict=True)):
        h = layers.Dense(width, activation="relu", name=f"head.{index}")(h)
        h = layers.Dropout(0.5 if i == 2 else 0.2)(h)
    feats = layers.Dense(64, activation="relu", name="head.11")(h)
    logits = layers.Dense(num_classes, name="classifier.1")(layers.Dropout(0.5)(feats))
    probs = layers.Activation("softmax", dtype="float32", name="probs")(logits)
    return keras.Model(frame, [probs, feats, refined], name="hybrid_cnn")


def parameter_counts(model: Any) -> dict[str, int]:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = int(model.count_params())
    return {"trainable": trainable, "non_trainable": total - trainable, "total": total}


def _densenet_names(blocks: tuple[int, ...] = (6, 12, 48, 32)) -> dict[str, str]:
    """torchvision DenseNet ``features`` module -> keras.applications DenseNet layer."""
    names = {"conv0": "conv1_conv", "norm0": "conv1_bn", "norm5": "bn"}
    for b, n in enumerate(blocks, start=1):
        for j in range(1, n + 1):
            t, k = f"denseblock{b}.denselayer{j}", f"conv{b + 1}_block{j}"
            names |= {f"{t}.norm1": f"{k}_0_bn", f"{t}.conv1": f"{k}_1_conv"}
            names |= {f"{t}.norm2": f"{k}_1_bn", f"{t}.conv2": f"{k}_2_conv"}
        if b < len(blocks):
            names |= {f"transition{b}.norm": f"pool{b + 1}_bn", f"transition{b}.conv": f"pool{b + 1}_conv"}
    return names


def port_weights(model: Any, state: dict[str, np.ndarray]) -> int:
    """Load lusviewer's ``HybridCNN`` state dict (PyTorch names and layouts, as numpy
    arrays) into ``build_model``'s model; returns the number of values loaded. Raises
    ``KeyError`` naming a module the state lacks, ``ValueError`` on a shape mismatch."""
    densenet = next(layer for layer in model.layers if layer.name.startswith("densenet") and hasattr(layer, "layers"))
    targets: list[tuple[str, Any]] = [(layer.name, layer) for layer in model.layers if layer.weights]
    targets = [(n, layer) for n, layer in targets if layer is not densenet]
    targets += [(f"densenet.features.{t}", densenet.get_layer(k)) for t, k in _densenet_names().items()]
    loaded = 0
    for prefix, layer in targets:
        kind = type(layer).__name__
        if kind == "SeparableConv2D":
            dw, pw, bias = (state[f"{prefix}.{i}"] for i in ("0.weight", "1.weight", "1.bias"))
            values = [dw.transpose(2, 3, 0, 1), pw.transpose(2, 3, 1, 0), bias]
        elif kind == "Conv2D":
            w = state[f"{prefix}.weight"].transpose(2, 3, 1, 0)
            values = [w, state[f"{prefix}.bias"]] if layer.use_bias else [w]
        elif kind == "Dense":
            values = [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
        elif kind == "BatchNormalization":
            values = [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
        else:
            raise ValueError(f"no rule to port a {kind} ({prefix})")
        for have, new in zip(layer.get_weights(), values, strict=True):
            if have.shape != new.shape:
                raise ValueError(f"{prefix}: Keras {have.shape} vs PyTorch {new.shape}")
        layer.set_weights([np.ascontiguousarray(v) for v in values])
        loaded += sum(int(v.size) for v in values)
    if loaded != model.count_params():
        raise ValueError(f"ported {loaded:,} values, but the Keras model has {model.count_params():,}")
    return loaded


def versions() -> dict[str, str]:
    import tensorflow as tf

    keras = _keras()
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
    }


class KerasBackend:
    """The server's models: one per variant (same random weights), compiled once per batch size."""

    def __init__(self) -> None:
        self.frames: np.ndarray | None = None
        self.runs: dict[str, Callable[[np.ndarray], object]] = {}
        self.predict_batch = 32

    def setup(self, req: dict[str, Any]) -> dict[str, Any]:
        threads = int(req.get("threads", 2))
        # Before TensorFlow starts its runtime (the first op): both pools, as torch's.
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        keras = _keras()
        self.frames = np.load(req["frames"])
        size = int(self.frames.shape[1])
        variants = list(req.get("variants", ["fp32"]))
        batches = [int(b) for b in req.get("batches", [1, 8, 32])]
        unknown = [v for v in variants if v not in KERAS_VARIANTS]
        if unknown:
            raise ValueError(f"unknown Keras variant(s) {unknown}; expected some of {list(KERAS_VARIANTS)}")
        keras.utils.set_random_seed(0)
        weights = None
        ported = 0
        params: dict[str, int] = {}
        compile_s: dict[str, float] = {}
        for name in variants:
            bf16, xla = KERAS_VARIANTS[name]
            keras.config.set_dtype_policy("mixed_bfloat16" if bf16 else "float32")
            try:
                model = build_model(size)
            finally:
                keras.config.set_dtype_policy("float32")
            if weights is None:
                if req.get("weights"):  # lusviewer's weights (npz of its state dict): all variants get them
                    with np.load(req["weights"]) as npz:
                        ported = port_weights(model, {k: npz[k] for k in npz.files})
                weights = model.get_weights()
                params = parameter_counts(model)
            else:
                model.set_weights(weights)
            fn = tf.function(lambda x, m=model: m(tf.cast(x, tf.float32) / 255.0, training=False), jit_compile=xla)

            def run(batch: np.ndarray, fn: Any = fn) -> object:
                return [o.numpy() for o in fn(tf.constant(batch))]

            t0 = time.perf_counter()
            for b in batches:  # trace (and, with XLA, compile) every batch shape now, not while timed
                run(np.resize(self.frames, (b, *self.frames.shape[1:])))
            compile_s[name] = time.perf_counter() - t0
            self.runs[name] = run
        self.predict_batch = max(batches)
        return {"ok": True, "params": params, "ported": ported, "versions": versions(), "compile_s": compile_s}

    def predict(self, req: dict[str, Any]) -> dict[str, Any]:
        """Class probabilities of every frame (in order) with one variant, saved as .npy."""
        if self.frames is None:
            raise RuntimeError("predict before setup")
        run = self.runs.get(req["variant"])
        if run is None:
            raise ValueError(f"Keras variant {req['variant']!r} was not set up (set up: {', '.join(self.runs)})")
        b, n = self.predict_batch, len(self.frames)
        out = []
        for i in range(0, n, b):  # the last batch padded to a shape already traced
            chunk = self.frames[i : i + b]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], b - len(chunk), 0)])
            out.append(np.asarray(self._probs(run(padded)))[: len(chunk)])
        np.save(req["out"], np.concatenate(out).astype(np.float32))
        return {"ok": True, "frames": n}

    @staticmethod
    def _probs(outputs: object) -> object:
        return outputs[0] if isinstance(outputs, list) else outputs

    def bench(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.frames is None:
            raise RuntimeError("bench before setup")
        run = self.runs.get(req["variant"])
        if run is None:
            raise ValueError(f"Keras variant {req['variant']!r} was not set up (set up: {', '.join(self.runs)})")
        n, dt = time_batches(
            run,
            self.frames,
            int(req["batch"]),
            min_frames=int(req["min_frames"]),
            min_seconds=float(req["min_seconds"]),
        )
        return bench_reply(n, dt)


class StubBackend(KerasBackend):
    """The same protocol with a numpy stand-in for the model (tests; no TensorFlow)."""

    def setup(self, req: dict[str, Any]) -> dict[str, Any]:
        self.frames = np.load(req["frames"])
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise ValueError(
                f"{req['frames']}: expected uint8 (N, S, S, 3) frames, got {self.frames.dtype} {self.frames.shape}"
            )
        variants = list(req.get("variants", ["fp32"]))
        unknown = [v for v in variants if v not in KERAS_VARIANTS]
        if unknown:
            raise ValueError(f"unknown Keras variant(s) {unknown}; expected some of {list(KERAS_VARIANTS)}")
        for name in variants:  # "probabilities": a frame's mean level in the first column
            self.runs[name] = lambda b: [np.eye(4, dtype=np.float32)[(b.mean((1, 2, 3)) > 127).astype(int)]]
        self.predict_batch = max(int(x) for x in req.get("batches", [1]))
        params = {"trainable": 0, "non_trainable": 0, "total": 0}
        stub = {"stub": "numpy " + np.__version__}
        return {"ok": True, "params": params, "ported": 0, "versions": stub, "compile_s": {}}


def serve_stdio(backend: KerasBackend) -> None:
    """Answer on the real stdout only: anything else that writes to fd 1 (TensorFlow's C++
    logging, a stray print) is sent to stderr so that it cannot break the protocol."""
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def handle(req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "setup":
            return backend.setup(req)
        if cmd == "bench":
            return backend.bench(req)
        if cmd == "predict":
            return backend.predict(req)
        raise ValueError(f"unknown command {cmd!r}")

    serve(handle, sys.stdin, proto_out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--params", action="store_true", help="build the model, print its parameter counts")
    mode.add_argument("--serve", action="store_true", help="answer keras_side_by_side.py on stdin/stdout")
    ap.add_argument("--stub", action="store_true", help="with --serve: a numpy stand-in, no TensorFlow")
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args(argv)
    if args.serve:
        serve_stdio(StubBackend() if args.stub else KerasBackend())
        return 0
    counts = parameter_counts(build_model(args.size))
    print(f"Keras hybrid CNN at {args.size} px: {counts}")
    print(
        f"lusviewer HybridCNN (PyTorch parameters): {TORCH_CNN_PARAMETERS:,}; Keras trainable: {counts['trainable']:,}"
        f" ({'equal' if counts['trainable'] == TORCH_CNN_PARAMETERS else 'DIFFERENT'}); Keras also counts"
        f" {counts['non_trainable']:,} BatchNorm moving statistics (PyTorch buffers)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
