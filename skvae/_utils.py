"""Small helpers: devices, random generators and optional dependencies."""

import importlib
import re

import numpy as np
import torch
from sklearn.utils import check_random_state

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def check_device_name(device):
    """Return True when ``device`` is a device name skvae understands."""
    return isinstance(device, str) and bool(_DEVICE_PATTERN.match(device))


def resolve_device(device):
    """Turn the ``device`` parameter into a concrete torch device string.

    ``"auto"`` picks CUDA when it is available and the CPU otherwise. Asking for
    CUDA on a machine without it is an error rather than a silent fallback.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on this "
                "machine; use device='auto' (CUDA when available, else CPU) or "
                "device='cpu'."
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only "
                f"{torch.cuda.device_count()} CUDA device(s) are visible."
            )
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' was requested but MPS is not available.")
    return device


def make_seed(random_state):
    """Draw one integer seed from a scikit-learn ``random_state``.

    ``None`` takes fresh entropy from the operating system, so NumPy's global
    random state is never read or advanced. An int always gives the same seed;
    a ``RandomState`` instance is advanced by one draw, as in scikit-learn.
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def derive_seed(seed, *keys):
    """A new seed determined by ``seed`` and the integers ``keys``."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def make_generator(seed, device="cpu"):
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(int(seed))


def adam_options(device):
    """Keyword arguments for the fastest Adam that this PyTorch offers on ``device``.

    Fused Adam (one kernel for all parameters) exists for CUDA and, from
    PyTorch 2.4 on, for the CPU.
    """
    version = tuple(int(part) for part in torch.__version__.split(".")[:2])
    if torch.device(device).type == "cuda" or version >= (2, 4):
        return {"fused": True}
    return {"foreach": True}


def import_optional(module, *, extra, caller):
    """Import an optional dependency or fail with the pip command that adds it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{caller} needs {module.split('.')[0]!r}, which is not installed. "
            f'Install it with: pip install "skvae[{extra}]"'
        ) from exc
