"""The hybrid CNN-LSTM of Dastider et al. 2021, ported to PyTorch.

Dastider, Sadik, Fattah, "An integrated autoencoder-based hybrid CNN-LSTM model
for COVID-19 severity prediction from lung ultrasound", Computers in Biology and
Medicine 132:104296 (2021).

The network has two stages:

* :class:`HybridCNN` scores single frames. An autoencoder and a depthwise-separable
  branch feed a "feature trader" that injects their maps into two parallel
  convolution paths; a DenseNet-201 branch runs beside them; a dense head fuses
  everything into a 64-d per-frame feature and four class logits.
* :class:`SequenceHead` (LSTM 1000 -> LSTM 1000 -> LSTM 4 -> dense 4) reads the
  64-d features of consecutive frames and gives every frame a score that sees the
  frames before it.

Choices where the paper and its partial Keras code are silent (the OPEN points of
``docs/hybrid-model.md``), resolved here:

1. *Feature trader.* Injection is by channel concatenation at matching
   resolution, using the autoencoder's *decoder* maps (the denoised signal the
   paper motivates the autoencoder with) and the separable branch's maps:

   - 128 px: the two classification paths read ``concat(frame, refined
     reconstruction)`` (6 channels). Concatenating the 16-channel 128 px maps
     there would triple the cost of the two widest convolutions (256 and 128
     filters at full resolution) for little gain, so only the 3-channel
     reconstruction is traded at this resolution.
   - 64 px: ``concat(decoder 64 px map (16 ch), separable 64 px map (8 ch))`` is
     concatenated to path A's pooled map before its 256->128 convolution.
   - 32 px: ``concat(decoder 32 px (8), separable 32 px (8))`` joins the final
     ``concat`` of the two paths before the last two convolutions.
   - 16 px: ``concat(decoder bottleneck (8), separable 16 px (8))`` is flattened
     (4096 values) and joins the head's input beside the 16384-value path
     features and the 256-d DenseNet vector.
2. *Path A's second chain* ("A also: conv ->128 -> conv ->64") starts from the
   output of A's first 128-filter convolution, not from the 256-channel pooled
   map; the text allows both and this halves the cost of the widest layer.
3. *Autoencoder output.* The refined reconstruction (``concat(reconstruction,
   input)`` -> conv -> sigmoid) is what :meth:`HybridCNN.forward` returns as the
   reconstruction; the overlay and the reconstruction error use it. It is
   trained with a mean-squared reconstruction loss beside the classification
   loss, on inputs with added Gaussian noise (a denoising autoencoder).
4. *LSTM at inference* on clips of any length: see :mod:`lusviewer.inference`
   (stateless windows with burn-in). The module itself accepts any sequence
   length and an optional carried state.
5. *Variants*: ``densenet`` is the DenseNet-201 branch alone (its 256-d vector
   -> batchnorm -> dropout -> dense 64 -> dense 4, no autoencoder, so no
   reconstruction); ``cnn`` is the full hybrid CNN without the LSTM; ``cnn_lstm``
   adds the sequence head on the CNN's 64-d features. ``compact`` is outside the
   paper (:class:`CompactCNN`: the autoencoder, then four small conv blocks; what
   ships, chosen by the repeated cross-validation in docs/model.md).
6. *DenseNet-201* is torchvision's, built with ``weights=None`` (nothing is
   downloaded); a ``conv 3->3`` precedes it as in the paper. Its ReLU'd final
   feature map is global-average pooled.

All convolutions are 3x3 'same' with ReLU and He (Kaiming) initialisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import DenseNet

VARIANTS = ("densenet", "cnn", "cnn_lstm", "compact")
#: The paper's three (its Table 2): what ``crossval`` compares unless told otherwise.
PAPER_VARIANTS = VARIANTS[:3]
#: How reports name the variants (the paper's Table 2, and the compact one outside the paper).
VARIANT_NAMES = {
    "densenet": "DenseNet-201",
    "cnn": "proposed CNN",
    "cnn_lstm": "CNN+LSTM",
    "compact": "compact CNN",
}
#: Classification heads: ``softmax`` (C logits) or ``coral`` (one score and C-1 ordered
#: thresholds, Cao et al. 2020; its class probabilities are returned as log-probabilities
#: in ``logits``, so that a softmax of them gives the same probabilities).
HEADS = ("softmax", "coral")
#: Auxiliary per-frame findings a model may also predict (from per-clip expert flags).
AUX_FINDINGS = ("a_lines", "b_lines")
CLASS_NAMES = ("score 0", "score 1", "score 2", "score 3")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one model; stored in the model card and used to rebuild it."""

    variant: str = "cnn_lstm"
    input_size: int = 128
    num_classes: int = 4
    #: Multiplies the channel counts of the classification paths (1.0 = paper).
    width: float = 1.0
    densenet_growth_rate: int = 32
    densenet_block_config: tuple[int, ...] = (6, 12, 48, 32)  # DenseNet-201
    densenet_init_features: int = 64
    densenet_dim: int = 256
    head_dims: tuple[int, ...] = (1024, 512, 128)
    feature_dim: int = 64
    lstm_hidden: int = 1000
    extra: dict[str, Any] = field(default_factory=dict)
    head: str = "softmax"
    aux_heads: tuple[str, ...] = ()
    #: Channels of the compact variant's four convolution blocks.
    compact_channels: tuple[int, ...] = (32, 64, 128, 192)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; expected one of {VARIANTS}")
        if self.input_size % 16:
            raise ValueError("input_size must be a multiple of 16")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; expected one of {HEADS}")
        bad = [a for a in self.aux_heads if a not in AUX_FINDINGS]
        if bad:
            raise ValueError(f"unknown auxiliary finding(s) {bad}; expected some of {AUX_FINDINGS}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["densenet_block_config"] = list(self.densenet_block_config)
        d["head_dims"] = list(self.head_dims)
        # Fields added after the first cards: written only where they differ from the
        # old behaviour, so that older cards' bound settings (and their hashes) hold.
        if self.head == "softmax":
            del d["head"]
        if self.aux_heads:
            d["aux_heads"] = list(self.aux_heads)
        else:
            del d["aux_heads"]
        if self.variant == "compact":
            d["compact_channels"] = list(self.compact_channels)
        else:
            del d["compact_channels"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for key in ("densenet_block_config", "head_dims", "aux_heads", "compact_channels"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)

    @classmethod
    def tiny(cls, variant: str = "cnn_lstm") -> ModelConfig:
        """A few-thousand-parameter configuration with the same topology, for tests."""
        cfg = cls(
            variant=variant,
            input_size=32,
            width=1 / 16,
            densenet_growth_rate=4,
            densenet_block_config=(1, 1, 1, 1),
            densenet_init_features=8,
            densenet_dim=16,
            head_dims=(32, 16, 16),
            feature_dim=8,
            lstm_hidden=16,
        )
        return replace(cfg, compact_channels=(4, 8, 8, 8)) if variant == "compact" else cfg


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1 convolution, ReLU (Keras SeparableConv2D)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1),
            nn.ReLU(inplace=True),
        )


class AEOutput(NamedTuple):
    reconstruction: Tensor  # refined, in [0, 1], same size as the input
    dec64: Tensor  # 16 ch at input/2
    dec32: Tensor  # 8 ch at input/4
    code: Tensor  # 8 ch at input/8 (after the first decoder conv)


class Autoencoder(nn.Module):
    """U-Net-like denoising autoencoder (encoder 16-8-8, bottleneck 8 at /8)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = _conv(3, 16)
        self.enc2 = _conv(16, 8)
        self.enc3 = _conv(8, 8)
        self.dec16 = _conv(8, 8)
        self.dec32 = _conv(16, 8)
        self.dec64 = _conv(16, 16)
        self.out = nn.Conv2d(32, 3, 3, padding=1)
        self.refine = nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, x: Tensor) -> AEOutput:
        e128 = self.enc1(x)
        e64 = self.enc2(F.max_pool2d(e128, 2))
        p32 = F.max_pool2d(e64, 2)
        e32 = self.enc3(p32)
        code = self.dec16(F.max_pool2d(e32, 2))
        d32 = self.dec32(torch.cat([F.interpolate(code, scale_factor=2.0), p32], 1))
        d64 = self.dec64(torch.cat([F.interpolate(d32, scale_factor=2.0), e64], 1))
        rec = torch.sigmoid(self.out(torch.cat([F.interpolate(d64, scale_factor=2.0), e128], 1)))
        refined = torch.sigmoid(self.refine(torch.cat([rec, x], 1)))
        return AEOutput(refined, d64, d32, code)


class SeparableBranch(nn.Module):
    """Three separable convolutions, each followed by 2x2 max-pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.s1 = SeparableConv(3, 16)
        self.s2 = SeparableConv(16, 8)
        self.s3 = SeparableConv(8, 8)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        s64 = self.s2(F.max_pool2d(self.s1(x), 2))
        s32 = self.s3(F.max_pool2d(s64, 2))
        s16 = F.max_pool2d(s32, 2)
        return s64, s32, s16


class DenseNetBranch(nn.Module):
    """conv 3->3, DenseNet-201 features, GAP, batchnorm, dropout 0.5, dense 256."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.stem = _conv(3, 3)
        net = DenseNet(
            growth_rate=cfg.densenet_growth_rate,
            block_config=cfg.densenet_block_config,  # type: ignore[arg-type]
            num_init_features=cfg.densenet_init_features,
        )
        self.features = net.features
        nfeat = net.classifier.in_features
        self.norm = nn.BatchNorm1d(nfeat)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(nfeat, cfg.densenet_dim)

    def forward(self, x: Tensor) -> Tensor:
        f = F.relu(self.features(self.stem(x)))
        f = torch.flatten(F.adaptive_avg_pool2d(f, 1), 1)
        return F.relu(self.fc(self.drop(self.norm(f))))


class ClassificationPaths(nn.Module):
    """The two parallel convolution paths with the feature-trader injections."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()

        def c(n: int) -> int:
            return max(4, round(n * cfg.width))

        self.a1 = _conv(6, c(256))
        self.b1 = _conv(6, c(128))
        self.a2 = _conv(c(256) + 24, c(128))  # + decoder 64 px (16) + separable (8)
        self.merge = _conv(c(128) + c(128), c(64))
        self.a3 = _conv(c(128), c(128))
        self.a4 = _conv(c(128), c(64))
        self.m1 = _conv(c(64) + c(64), c(64))
        self.m2 = _conv(c(64), c(32))
        self.b2 = _conv(c(128), c(64))
        self.b3 = _conv(c(64), c(32))
        self.f1 = _conv(c(32) + c(32) + 16, c(32))  # + decoder 32 px (8) + separable (8)
        self.f2 = _conv(c(32), c(16))
        self.drop = nn.Dropout(0.2)
        self.out_dim = c(16) * (cfg.input_size // 4) ** 2

    def forward(self, x6: Tensor, f64: Tensor, f32: Tensor) -> Tensor:
        a = self.drop(F.max_pool2d(self.a1(x6), 2))
        b = self.drop(F.max_pool2d(self.b1(x6), 2))
        a = self.a2(torch.cat([a, f64], 1))
        merged = self.merge(torch.cat([a, b], 1))
        a_more = self.drop(self.a4(self.a3(a)))
        m = self.m2(self.m1(torch.cat([merged, a_more], 1)))
        m = self.drop(F.max_pool2d(m, 2))
        b = self.drop(self.b3(self.b2(b)))
        b = F.max_pool2d(b, 2)
        out = self.f2(self.f1(torch.cat([m, b, f32], 1)))
        return torch.flatten(out, 1)


class CNNOutput(NamedTuple):
    logits: Tensor  # (N, num_classes); for a CORAL head, log class probabilities
    features: Tensor  # (N, feature_dim): what the LSTM reads
    reconstruction: Tensor | None  # (N, 3, H, W) in [0, 1]; None for ``densenet``
    aux: Tensor | None = None  # (N, len(aux_heads)) logits of the auxiliary findings
    cumulative: Tensor | None = None  # (N, num_classes - 1) CORAL logits of P(score >= k)


class ClassHead(nn.Sequential):
    """Dropout, then the class logits: softmax (dense C) or CORAL (dense 1 + C-1 ordered
    biases; P(score >= k) = sigmoid(w.x + b_k), the class probabilities their differences).
    A ``Sequential`` (dropout, dense) so that the weights' names are those of older cards."""

    def __init__(self, cfg: ModelConfig) -> None:
        coral = cfg.head == "coral"
        super().__init__(nn.Dropout(0.5), nn.Linear(cfg.feature_dim, 1 if coral else cfg.num_classes, bias=not coral))
        self.kind = cfg.head
        self.bias = nn.Parameter(torch.linspace(1.0, -1.0, cfg.num_classes - 1)) if coral else None

    def forward(self, feats: Tensor) -> tuple[Tensor, Tensor | None]:  # type: ignore[override]
        z = self[1](self[0](feats))
        if self.bias is None:
            return z, None
        cum = z.float() + self.bias.float()  # (N, C-1) logits of P(>= k)
        up = torch.sigmoid(cum)
        ones, zeros = torch.ones_like(up[:, :1]), torch.zeros_like(up[:, :1])
        p = torch.cat([ones, up], 1) - torch.cat([up, zeros], 1)
        return torch.log(p.clamp_min(1e-6)), cum


def _class_and_aux_heads(cnn: nn.Module, cfg: ModelConfig) -> tuple[ClassHead, nn.Linear | None]:
    """The class head and the auxiliary findings' head of a per-frame CNN, made in this
    order (the random draws of older cards' models depend on it), then He initialisation
    of every convolution of ``cnn`` (the heads are registered by the caller)."""
    classifier = ClassHead(cfg)
    aux = nn.Linear(cfg.feature_dim, len(cfg.aux_heads)) if cfg.aux_heads else None
    for m in cnn.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return classifier, aux


class CompactCNN(nn.Module):
    """A small per-frame CNN outside the paper (ICLUS literature: small CNNs trained from
    scratch do best on little data): the paper's autoencoder, then four blocks of two
    3x3 convolutions with batch norm on ``concat(frame, reconstruction)`` (pooled after
    the first three), global average pooling, dense ``feature_dim``, the class head.
    0.86 M parameters with the default channels (``compact_channels`` x ``width``)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.autoencoder = Autoencoder()
        blocks: list[nn.Module] = []
        prev = 6
        for i, full in enumerate(cfg.compact_channels):
            ch = max(4, round(full * cfg.width))
            layers: list[nn.Module] = [
                nn.Conv2d(prev, ch, 3, padding=1, bias=False),
                nn.BatchNorm2d(ch),
                nn.ReLU(inplace=True),
                nn.Conv2d(ch, ch, 3, padding=1, bias=False),
                nn.BatchNorm2d(ch),
                nn.ReLU(inplace=True),
            ]
            if i < len(cfg.compact_channels) - 1:
                layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
            prev = ch
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(prev, cfg.feature_dim), nn.ReLU(inplace=True))
        self.classifier, self.aux = _class_and_aux_heads(self, cfg)

    @property
    def cam_layer(self) -> nn.Module:
        """Where Grad-CAM looks: the last block's output (input / 8)."""
        layer: nn.Module = self.blocks[-1]
        return layer

    def forward(self, x: Tensor) -> CNNOutput:
        rec = self.autoencoder(x).reconstruction
        f = self.blocks(torch.cat([x, rec], 1))
        feats = self.head(torch.flatten(F.adaptive_avg_pool2d(f, 1), 1))
        logits, cum = self.classifier(feats)
        aux = self.aux(feats) if self.aux is not None else None
        return CNNOutput(logits, feats, rec, aux, cum)


class HybridCNN(nn.Module):
    """Stage 1: per-frame classifier. Input (N, 3, S, S) in [0, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.densenet = DenseNetBranch(cfg)
        dims: list[int]
        if cfg.variant == "densenet":
            self.autoencoder: Autoencoder | None = None
            self.separable: SeparableBranch | None = None
            self.paths: ClassificationPaths | None = None
            in_dim = cfg.densenet_dim
            dims = []
        else:
            self.autoencoder = Autoencoder()
            self.separable = SeparableBranch()
            self.paths = ClassificationPaths(cfg)
            in_dim = self.paths.out_dim + 16 * (cfg.input_size // 8) ** 2 + cfg.densenet_dim
            dims = list(cfg.head_dims)
        layers: list[nn.Module] = [nn.BatchNorm1d(in_dim), nn.Dropout(0.2)]
        prev = in_dim
        for i, d in enumerate(dims):
            layers += [nn.Linear(prev, d), nn.ReLU(inplace=True)]
            layers.append(nn.Dropout(0.5 if i == len(dims) - 1 else 0.2))
            prev = d
        layers += [nn.Linear(prev, cfg.feature_dim), nn.ReLU(inplace=True)]
        self.head = nn.Sequential(*layers)
        self.classifier, self.aux = _class_and_aux_heads(self, cfg)

    def forward(self, x: Tensor) -> CNNOutput:
        dense = self.densenet(x)
        if self.autoencoder is None or self.separable is None or self.paths is None:
            feats = self.head(dense)
            logits, cum = self.classifier(feats)
            return CNNOutput(logits, feats, None, self.aux(feats) if self.aux is not None else None, cum)
        ae = self.autoencoder(x)
        s64, s32, s16 = self.separable(x)
        paths = self.paths(
            torch.cat([x, ae.reconstruction], 1),
            torch.cat([ae.dec64, s64], 1),
            torch.cat([ae.dec32, s32], 1),
        )
        f16 = torch.flatten(torch.cat([ae.code, s16], 1), 1)
        feats = self.head(torch.cat([paths, f16, dense], 1))
        logits, cum = self.classifier(feats)
        aux = self.aux(feats) if self.aux is not None else None
        return CNNOutput(logits, feats, ae.reconstruction, aux, cum)


LSTMState = list[tuple[Tensor, Tensor]]


class SequenceHead(nn.Module):
    """Stage 2: LSTM 1000 -> dropout -> LSTM 1000 -> dropout -> LSTM 4 -> dense 4."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h = cfg.lstm_hidden
        self.lstms = nn.ModuleList(
            [
                nn.LSTM(cfg.feature_dim, h, batch_first=True),
                nn.LSTM(h, h, batch_first=True),
                nn.LSTM(h, cfg.num_classes, batch_first=True),
            ]
        )
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(cfg.num_classes, cfg.num_classes)

    def forward(self, feats: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        """``feats`` (B, T, feature_dim) -> logits (B, T, classes) and the final state."""
        out = feats
        new_state: LSTMState = []
        for i, lstm in enumerate(self.lstms):
            out, st = lstm(out, None if state is None else state[i])
            new_state.append(st)
            if i < 2:
                out = self.drop(out)
        return self.fc(out), new_state


class HybridModel(nn.Module):
    """A :class:`HybridCNN` plus, for ``cnn_lstm``, a :class:`SequenceHead`."""

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ModelConfig()
        self.cnn: HybridCNN | CompactCNN = (
            CompactCNN(self.cfg) if self.cfg.variant == "compact" else HybridCNN(self.cfg)
        )
        self.sequence: SequenceHead | None = SequenceHead(self.cfg) if self.cfg.variant == "cnn_lstm" else None

    def forward(self, clip: Tensor) -> tuple[Tensor, Tensor | None]:
        """``clip`` (B, T, 3, S, S) -> per-frame logits (B, T, C) and reconstruction."""
        b, t = clip.shape[:2]
        out = self.cnn(clip.flatten(0, 1))
        logits = out.logits.view(b, t, -1)
        if self.sequence is not None:
            logits, _ = self.sequence(out.features.view(b, t, -1))
        rec = None if out.reconstruction is None else out.reconstruction.view(clip.shape)
        return logits, rec


def count_parameters(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def parameter_counts(model: HybridModel) -> dict[str, int]:
    """Parameters per part, for the model card and the pinned test."""
    cnn = model.cnn
    if isinstance(cnn, CompactCNN):
        return {
            "autoencoder": count_parameters(cnn.autoencoder),
            "blocks": count_parameters(cnn.blocks),
            "head": count_parameters(cnn.head) + count_parameters(cnn.classifier) + count_parameters(cnn.aux),
            "sequence": count_parameters(model.sequence),
            "total": count_parameters(model),
        }
    return {
        "autoencoder": count_parameters(cnn.autoencoder),
        "separable": count_parameters(cnn.separable),
        "paths": count_parameters(cnn.paths),
        "densenet": count_parameters(cnn.densenet),
        "head": count_parameters(cnn.head) + count_parameters(cnn.classifier) + count_parameters(cnn.aux),
        "sequence": count_parameters(model.sequence),
        "total": count_parameters(model),
    }
