"""Host-sync counter: the ops in a block of tensor code that make the host wait for the device.

A GPU runs queued kernels while the host goes on queueing; an op whose result the host must read (a Python
scalar, a shape that depends on the data, a copy between host and device) stalls that pipeline until the
queue drains. `HostSyncs` counts those ops while the block runs, on any device: on the CPU nothing waits, but
the same ops run, so tests and benchmarks on the CPU count what a GPU would wait for.

Counted (by op name in `HostSyncs.by_op`):

- `aten._local_scalar_dense`: `.item()`, `bool()`, `int()`, `float()` of a tensor (also `if tensor:`);
- `aten.nonzero`, `aten.masked_select`, `torch.where(cond)` (one argument), and boolean-mask indexing and
  assignment (`aten.index.Tensor` / `aten.index_put_` with a bool index, counted as `index[bool]` /
  `index_put[bool]`): their output shape is the number of True entries;
- `aten._unique2`, `aten.unique_dim`, `aten.unique_consecutive`: output shape from the data;
- `aten.repeat_interleave.Tensor` without `output_size`, `aten.bincount` (its length is max + 1 on CUDA);
- `aten.equal`, `aten.allclose`, `aten.is_nonzero`: a Python bool;
- copies between devices (`aten._to_copy` / `aten.copy_` with one side off the CPU);
- host reads that never reach the dispatcher: `Tensor.tolist()`, `Tensor.numpy()`, `Tensor.cpu()` of a CPU
  tensor (on a GPU the copy itself is counted), and `torch.tensor` / `torch.as_tensor` of Python data (a
  host -> device copy when the target is a GPU).

Not counted: ops whose output shape the host already knows (`nonzero_static`, `topk`, `sort`, `where` with
three arguments, indexing with integer tensors), since they queue without waiting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostSyncs", "count_syncs"]

_ops = torch.ops.aten
_ALWAYS = {
    _ops._local_scalar_dense.default: "_local_scalar_dense",
    _ops.nonzero.default: "nonzero",
    _ops.masked_select.default: "masked_select",
    _ops._unique2.default: "unique",
    _ops.unique_dim.default: "unique",
    _ops.unique_consecutive.default: "unique",
    _ops.bincount.default: "bincount",
    _ops.equal.default: "equal",
    _ops.allclose.default: "allclose",
    _ops.is_nonzero.default: "is_nonzero",
}


def _bool_index(indices: object) -> bool:
    return isinstance(indices, list | tuple) and any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices
    )


def _crosses(a: object, b: object) -> bool:
    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.device != b.device
        and "cpu" in (a.device.type, b.device.type)
    )


class _Dispatch(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch leaves the mode untyped
    def __init__(self, counts: Counter[str]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.counts = counts

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = _ALWAYS.get(func)
        packet = func.overloadpacket
        if name is None:
            if packet in (_ops.index, _ops.index_put, _ops.index_put_) and _bool_index(args[1]):
                name = "index[bool]" if packet is _ops.index else "index_put[bool]"
            elif packet is _ops.repeat_interleave and func is _ops.repeat_interleave.Tensor:
                name = None if kwargs.get("output_size") is not None else "repeat_interleave"
            elif packet is _ops._to_copy:
                target = kwargs.get("device")
                if target is not None and torch.device(target).type != args[0].device.type:
                    name = "device_copy"
            elif packet is _ops.copy_ and _crosses(args[0], args[1]):
                name = "device_copy"
        if name is not None:
            self.counts[name] += 1
        return func(*args, **kwargs)


class _Function(TorchFunctionMode):
    def __init__(self, counts: Counter[str]) -> None:
        super().__init__()
        self.counts = counts

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        name = getattr(func, "__name__", "")
        if name in ("tolist", "numpy"):
            self.counts[name] += 1
        elif name == "cpu" and args and isinstance(args[0], torch.Tensor) and args[0].device.type == "cpu":
            self.counts["cpu"] += 1  # off the CPU the dispatcher sees (and counts) the copy
        elif name in ("tensor", "as_tensor") and args and not isinstance(args[0], torch.Tensor):
            self.counts["tensor(host data)"] += 1
        return func(*args, **(kwargs or {}))


class HostSyncs:
    """Context manager counting host syncs (see the module docstring) in the block it wraps.

    `total` is the count, `by_op` the count per op name. Re-entrant use is not supported; one counter at a
    time. Usage: `with HostSyncs() as syncs: memory.add_frame(...)`, then `syncs.total`.
    """

    def __init__(self) -> None:
        self.by_op: Counter[str] = Counter()
        self._modes: tuple[_Function, _Dispatch] | None = None

    @property
    def total(self) -> int:
        """Host syncs counted so far."""
        return sum(self.by_op.values())

    def __enter__(self) -> HostSyncs:
        self._modes = (_Function(self.by_op), _Dispatch(self.by_op))
        for mode in self._modes:
            mode.__enter__()  # type: ignore[no-untyped-call]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._modes is not None
        for mode in reversed(self._modes):
            mode.__exit__(kind, error, trace)  # type: ignore[no-untyped-call]
        self._modes = None


def count_syncs(fn: Callable[[], object]) -> tuple[object, HostSyncs]:
    """Run `fn()` under a `HostSyncs` -> (its result, the counter)."""
    with HostSyncs() as syncs:
        result = fn()
    return result, syncs
