"""PyInstaller runtime hook: let ``import torchvision`` work without its compiled ops.

The CPU-only bundle pairs a CPU build of torch with a torchvision wheel whose
compiled extension (``_C`` / ``_C_stable``: nms, roi_align, deform_conv2d, ...)
links against CUDA torch and so does not load. lusviewer uses none of those ops
(only torchvision's DenseNet-201 definition), but torchvision registers "fake"
kernels for them at import and fails when they do not exist. This hook, run
before the app's code, skips those registrations for ``torchvision::`` ops that
are absent; with a matching torchvision (ops present) it changes nothing.
"""

from __future__ import annotations

from typing import Any


def _install() -> None:
    import torch
    import torch.library

    original = torch.library.register_fake

    def _missing(qualname: str) -> bool:
        ns = qualname.partition("::")[0]
        try:
            torch._C._dispatch_find_schema_or_throw(qualname, "")
        except RuntimeError:
            return ns == "torchvision"
        return False

    def register_fake(op: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(op, str) and _missing(op):
            if args and callable(args[0]):  # register_fake(op, fn): nothing to register
                return args[0]
            return lambda fn: fn  # the decorator form
        return original(op, *args, **kwargs)

    torch.library.register_fake = register_fake  # type: ignore[assignment]


_install()
