"""thrifty: fine-tune pre-trained transformers at the lowest cost for the accuracy.

The CLI (`thrifty train | evaluate | predict | ...`) and this API are two faces of the same functions. The
names below load on first use, so `import thrifty` (and `thrifty --version`) does not import torch.
"""

from __future__ import annotations

import os
from typing import Any

from thrifty.version import __version__

# thrifty runs offline: transformers 5 would otherwise fetch "hub kernels" (the `kernels` package, one of its
# dependencies) for every model it loads, and kernelize the meta-device skeletons that estimates count FLOPs on,
# which fails. An explicit USE_HUB_KERNELS=YES in the environment is respected (the estimate does not depend on it).
os.environ.setdefault("USE_HUB_KERNELS", "NO")

_LAZY = {"train": "thrifty.api", "adapt": "thrifty.api", "evaluate": "thrifty.api", "predict": "thrifty.api",
         "zeroshot": "thrifty.api", "Config": "thrifty.config", "load_config": "thrifty.config"}
__all__ = ["Config", "adapt", "evaluate", "load_config", "predict", "train", "zeroshot", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'thrifty' has no attribute {name!r}")
