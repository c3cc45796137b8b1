"""The backend seam: what a code generator offers the plan builder, and one registry of
them keyed by device type.

A ``Backend`` says which Kernel ops and dtypes it can render (``supports``), compiles one
``Kernel`` (``compile_kernel``) or several independent ones as one call
(``batch_groups`` + ``compile_batch``), and runs compiled code (``launch``). The plan
builder and the fusion pass ask ``backend_for(device.type)`` and never name a device:

    >>> from ember import dtypes
    >>> cpu = backend_for("cpu")
    >>> cpu.name, cpu.supports("exp", dtypes.float32), cpu.supports("matmul", dtypes.float32)
    ('llvm', True, False)

Adding a backend is one subclass and one ``register_backend(device_type, factory)`` call
(the built-in ones are imported on first use, so importing this module loads neither
llvmlite nor CuPy).
"""
from __future__ import annotations

import importlib
import threading
from typing import Callable

from ember.codegen.kernel import REDUCTIONS, Kernel
from ember.codegen.policy import FUSIBLE, KERNEL_DTYPES
from ember.dtypes import DType

__all__ = ["Backend", "register_backend", "backend_for"]


class Backend:
    """One code generator for one device type (subclass it; see the module docstring)."""

    name: str = ""              # shown by explain(): "llvm", "cuda"
    device_type: str = ""       # the ``Device.type`` it compiles for
    # The value dtypes its generated code handles (a kernel touching another falls back).
    dtypes: frozenset = KERNEL_DTYPES
    # Whether it reduces down columns (over a tensor's leading dims) as fast as along
    # rows: it then gets bias gradients and other column sums to fuse.
    column_reductions: bool = False
    # Whether its size-generic kernels read "scalar" exprs at run time (Kernel.scalars):
    # a mean over a varying dim then shares code across sizes.
    runtime_scalars: bool = False

    def supports(self, op: str, dtype: DType) -> bool:
        """Whether a Kernel expr ``op`` producing ``dtype`` can be compiled."""
        return dtype in self.dtypes and (op in FUSIBLE or op in REDUCTIONS)

    def compile_kernel(self, kernel: Kernel):
        """Compiled code for ``kernel``: an object with ``run(inputs, outputs)`` and
        ``source``."""
        raise NotImplementedError

    def batch_groups(self, kernels: list[Kernel]) -> list[list[int]]:
        """How independent ``kernels`` share calls: lists of their indices, each list
        one ``compile_batch``. The default is one call for all."""
        return [list(range(len(kernels)))]

    def compile_batch(self, kernels: list[Kernel], name: str):
        """Independent kernels as one call: ``run([[inputs...], ...], [[outputs...], ...])``.
        Raises if they cannot be (the plan then keeps them apart)."""
        raise NotImplementedError(f"backend {self.name} runs kernels one at a time")

    def launch(self, compiled, inputs: list, outputs: list) -> None:
        """Run compiled code over ``inputs`` into the preallocated ``outputs``. The plan's
        steps hold ``compiled.run`` directly (the same call, one indirection less per
        kernel on the replay path)."""
        compiled.run(inputs, outputs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} for {self.device_type!r}>"


# device type -> a Backend instance, or the "module:Class" that makes one on first use.
_REGISTRY: dict[str, Backend | str | Callable[[], Backend]] = {
    "cpu": "ember.codegen.llvm:LLVMBackend",
    "cuda": "ember.codegen.cuda:CudaBackend",
}
_LOCK = threading.Lock()


def register_backend(device_type: str, backend: Backend | Callable[[], Backend]) -> None:
    """Make ``backend`` (or what ``backend()`` returns, made on first use) the code
    generator of ``device_type``; replaces the one registered before."""
    with _LOCK:
        _REGISTRY[device_type] = backend


def backend_for(device_type: str) -> Backend | None:
    """The backend of ``device_type``, or None if none is registered (its ops run
    eagerly)."""
    b = _REGISTRY.get(device_type)
    if b is None or isinstance(b, Backend):
        return b
    with _LOCK:
        b = _REGISTRY[device_type]
        if not isinstance(b, Backend):
            if isinstance(b, str):
                module, cls = b.split(":")
                b = getattr(importlib.import_module(module), cls)()
            else:
                b = b()
            _REGISTRY[device_type] = b
    return b
