"""A fake GPU on the CPU: real CPU tensors that carry a mark saying "I live on cuda:N".

No GPU has been lent to this project, and a CPU-only torch cannot allocate on ``cuda``. This
emulation lets ordinary code ask for ``device="cuda"`` and checks it the way a GPU would:

* ``torch.cuda.is_available()`` says yes and ``torch.cuda.*`` calls answer (see :func:`fake_gpus`).
* ``.to("cuda")``, ``.cuda()`` and factories called with ``device="cuda"`` give real CPU tensors
  *marked* with a GPU index; ``.cpu()`` / ``.to("cpu")`` give unmarked copies. Every operation
  with a marked input marks its outputs, and ``tensor.device`` / ``.is_cuda`` report the mark, so
  code that allocates "on the device of x" follows along.
* Host synchronisations are recorded in ``state["syncs"]``: reading a device tensor on the host
  (``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``, data-dependent shapes such as ``nonzero``)
  and blocking copies from pageable host memory to the device.
* As on a GPU, an operation that mixes a marked tensor with an unmarked one (other than a 0-dim
  CPU scalar, and other than the CPU arguments CUDA accepts: indices of ``x[idx]``, the lengths of
  a packed sequence, the source of ``copy_``) raises "Expected all tensors to be on the same
  device", and ``.numpy()`` of a marked tensor raises as it does on ``cuda``.

It runs the real computation, so values stay checkable. A TorchFunctionMode sees every torch call
made from Python (modules, functionals, optimisers, tensor methods); gradients made by autograd
are marked when read through ``.grad``. Not emulated: streams, memory limits, CUDA kernels'
numerics and autocast (CPU tensors ignore ``torch.autocast("cuda")``; precision is tested with
CPU autocast in ``test_precision.py``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

ATTR = "_fake_cuda_index"
TensorBase = torch._C.TensorBase
_GETTERS = {TensorBase.device: "device", TensorBase.is_cuda: "is_cuda"}
#: ops that accept CPU tensors beside CUDA ones (positions of those arguments)
_CPU_ARGS_OK = {"__getitem__": "indices", "__setitem__": "indices", "index_put": "indices",
                "index_put_": "indices", "copy_": (1,), "_pack_padded_sequence": (1,),
                "_pad_packed_sequence": (1,), "gru": (1,), "lstm": (1,), "rnn_tanh": (1,),
                "rnn_relu": (1,)}
#: ops whose CPU arguments CUDA *requires* (a marked tensor there is an error)
_MUST_BE_CPU = {"_pack_padded_sequence": 1}
_FIRST_OUTPUT_ONLY = {"_pack_padded_sequence", "_pad_packed_sequence"}
#: calls that read a device tensor on the host (or whose output size depends on its values):
#: on a GPU each waits for the queued kernels, a host synchronisation
_SYNCS = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero",
          "unique", "unique_consecutive", "masked_select", "repeat_interleave", "argwhere"}


class FakeDeviceError(RuntimeError):
    """What CUDA would have raised."""


def mark(t: torch.Tensor) -> int | None:
    """The fake GPU index of ``t`` (None: a CPU tensor)."""
    return getattr(t, ATTR, None)


def _set(t: Any, index: int | None) -> Any:
    if isinstance(t, torch.Tensor):
        setattr(t, ATTR, index)
    return t


def _name(func: Any) -> str:
    return getattr(func, "__name__", str(func))


def _target(device: Any) -> torch.device | None:
    if device is None:
        return None
    if isinstance(device, int):
        return torch.device("cuda", device)
    return torch.device(device)


class FakeCUDA(TorchFunctionMode):
    """The mode; use :func:`fake_gpus` (it also patches ``torch.cuda``)."""

    def __init__(self, state: dict) -> None:
        super().__init__()
        self.state = state

    def _index(self, device: torch.device) -> int:
        index = self.state["current"] if device.index is None else device.index
        if index >= self.state["count"]:
            raise FakeDeviceError(f"CUDA error: invalid device ordinal {index}")
        return index

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = _name(func)
        owner = getattr(func, "__self__", None)
        if name == "__get__" and owner is not None:  # a Tensor property
            return self._getter(func, owner, args)
        if name == "__set__":
            out = func(*args, **kwargs)
            if owner is TensorBase.data and isinstance(args[1], torch.Tensor):
                _set(args[0], mark(args[1]))
            return out
        if name in ("to", "cuda", "cpu"):
            return self._move(func, name, args, kwargs)
        if name in ("numpy", "__array__") and mark(args[0]) is not None:
            raise FakeDeviceError(f"can't convert cuda:{mark(args[0])} device type tensor to "
                                  "numpy. Use Tensor.cpu() to copy the tensor to host memory first.")
        if name in _SYNCS and any(mark(x) is not None for x in tree_flatten((args, kwargs))[0]
                                  if isinstance(x, torch.Tensor)):
            self.state["syncs"].append(name)
        if name == "__getitem__" and any(
                isinstance(x, torch.Tensor) and x.dtype == torch.bool and mark(x) is not None
                for x in tree_flatten(args[1:])[0]):
            self.state["syncs"].append("boolean index")
        device = _target(kwargs.get("device"))
        if device is not None and device.type == "cuda":
            kwargs["device"] = "cpu"
            target = self._index(device)
        elif device is not None:
            target = None
        else:
            target = self._inputs(name, args, kwargs)
        out = func(*args, **kwargs)
        if name.endswith("_") and args and isinstance(args[0], torch.Tensor) and out is args[0]:
            return out  # in place: the tensor keeps its device
        if name in _FIRST_OUTPUT_ONLY:
            _set(out[0], target)
            return out
        leaves, _ = tree_flatten(out)
        for leaf in leaves:
            _set(leaf, target)
        return out

    def _getter(self, func, owner, args):
        t = args[0]
        value = func(*args)
        kind = _GETTERS.get(owner)
        index = mark(t) if isinstance(t, torch.Tensor) else None
        if kind == "device" and index is not None:
            return torch.device("cuda", index)
        if kind == "is_cuda":
            return index is not None
        if isinstance(value, torch.Tensor) and value is not t:  # .grad, .data, .T ...
            _set(value, index)
        return value

    def _move(self, func, name, args, kwargs):
        t, rest = args[0], args[1:]
        source = mark(t)
        if name == "cpu":
            device, dtype = torch.device("cpu"), None
        elif name == "cuda":
            device = torch.device("cuda", rest[0] if rest else kwargs.get("device") or
                                  self.state["current"])
            dtype = None
        elif rest and isinstance(rest[0], torch.Tensor):  # t.to(other)
            other = rest[0]
            device = torch.device("cuda", mark(other)) if mark(other) is not None else None
            dtype = other.dtype
        else:
            device, dtype, _, _ = torch._C._nn._parse_to(*rest, **kwargs)
        flags = [x for x in rest if isinstance(x, bool)]  # to(device, dtype, non_blocking)
        non_blocking = bool(kwargs.get("non_blocking", flags[0] if flags else False))
        out = t.to(dtype) if dtype is not None else t
        if device is None or device.type == "cpu" and source is None:
            if out is not t:
                _set(out, source)
            return out
        if device.type == "cuda":
            index = self._index(device)
            if source == index:
                return out
            if source is None and not non_blocking:
                self.state["syncs"].append("blocking host-to-device copy")
            out = out.clone() if out is t else out
            if isinstance(t, torch.nn.Parameter):  # Module.to: the parameter takes this data
                _set(t, index)
            return _set(out, index)
        if device.type == "cpu":  # from the fake GPU to the host: a copy
            self.state["syncs"].append("device-to-host copy")
            out = out.clone() if out is t else out
            if isinstance(t, torch.nn.Parameter):
                _set(t, None)
            return _set(out, None)
        raise FakeDeviceError(f"fake_gpus: unsupported device {device}")

    def _inputs(self, name: str, args, kwargs) -> int | None:
        """The fake device of an op's inputs; raise as CUDA would on a mix."""
        allowed = _CPU_ARGS_OK.get(name, ())
        must_cpu = _MUST_BE_CPU.get(name)
        devices: dict[str, list] = {"cuda": [], "cpu": []}
        for pos, arg in enumerate(args):
            if allowed == "indices" and pos > 0:
                if pos == 1:  # the indices: CPU ones are fine
                    leaves = [x for x in tree_flatten(arg)[0] if isinstance(x, torch.Tensor)]
                    devices["cuda"] += [mark(x) for x in leaves if mark(x) is not None]
                    continue
            if isinstance(allowed, tuple) and pos in allowed:
                if must_cpu == pos and isinstance(arg, torch.Tensor) and mark(arg) is not None:
                    raise FakeDeviceError(f"'lengths' argument should be a 1D CPU int64 tensor, "
                                          f"but got 1D cuda:{mark(arg)} Long tensor")
                continue
            for x in tree_flatten(arg)[0]:
                self._classify(x, devices)
        for x in tree_flatten(kwargs)[0]:
            self._classify(x, devices)
        marks = set(devices["cuda"])
        if len(marks) > 1 or (marks and devices["cpu"]):
            found = sorted(f"cuda:{m}" for m in marks) + (["cpu"] if devices["cpu"] else [])
            raise FakeDeviceError(f"{name}: Expected all tensors to be on the same device, but "
                                  f"found at least two devices, {found[0]} and {found[1]}!")
        return marks.pop() if marks else None

    @staticmethod
    def _classify(x: Any, devices: dict[str, list]) -> None:
        if not isinstance(x, torch.Tensor):
            return
        if mark(x) is not None:
            devices["cuda"].append(mark(x))
        elif x.dim() > 0:  # a 0-dim CPU tensor mixes with CUDA tensors (a scalar)
            devices["cpu"].append(x)


@contextmanager
def fake_gpus(monkeypatch, count: int = 1, peak_bytes: int = 0) -> Iterator[dict]:
    """Pretend this machine has ``count`` GPUs for the body. Yields the state: ``calls`` (the
    ``torch.cuda`` calls made, e.g. ``("set_device", 1)``), ``current`` and ``count``."""
    state: dict[str, Any] = {"count": count, "current": 0, "calls": [], "peak": peak_bytes,
                             "syncs": [],
                             "rng": [torch.ByteTensor(16).zero_() for _ in range(count)]}

    def set_device(device: Any) -> None:
        index = device if isinstance(device, int) else torch.device(device).index or 0
        if index >= state["count"]:
            raise FakeDeviceError(f"CUDA error: invalid device ordinal {index}")
        state["current"] = index
        state["calls"].append(("set_device", index))

    def set_rng_state(new_state: torch.Tensor, device: Any = "cuda") -> None:
        if not isinstance(new_state, torch.ByteTensor) or mark(new_state) is not None:
            raise TypeError("RNG state must be a torch.ByteTensor")
        index = device if isinstance(device, int) else torch.device(device).index
        index = state["current"] if index is None else index
        if index >= state["count"]:
            raise FakeDeviceError(f"CUDA error: invalid device ordinal {index}")
        state["rng"][index] = new_state.clone()
        state["calls"].append(("set_rng_state", index))

    def record(name: str, value: Any = None):
        def call(*a, **k):
            state["calls"].append((name, *a))
            return value
        return call

    cuda = torch.cuda
    patches = {
        "is_available": lambda: True, "device_count": lambda: state["count"],
        "current_device": lambda: state["current"], "set_device": set_device,
        "get_device_name": lambda *a: "Fake GPU (CPU emulation)",
        "is_bf16_supported": lambda *a, **k: True, "synchronize": record("synchronize"),
        "reset_peak_memory_stats": record("reset_peak_memory_stats"),
        "memory_allocated": record("memory_allocated", 0),
        "max_memory_allocated": lambda *a: state["peak"],
        "get_rng_state": lambda device="cuda": state["rng"][state["current"] if device == "cuda"
                                                          else torch.device(device).index].clone(),
        "get_rng_state_all": lambda: [s.clone() for s in state["rng"]],
        "set_rng_state": set_rng_state,
        "set_rng_state_all": lambda states: [set_rng_state(s, i) for i, s in enumerate(states)],
        "manual_seed_all": record("manual_seed_all"), "manual_seed": record("manual_seed"),
        "empty_cache": record("empty_cache"),
    }
    for attr, value in patches.items():
        monkeypatch.setattr(cuda, attr, value)
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch, "Generator", _Generator)
    # pinning happens in loader threads, which a (thread-local) mode does not see: patch methods
    monkeypatch.setattr(torch.Tensor, "pin_memory", _pin_memory)
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda t, *a: bool(getattr(t, "_fake_pinned",
                                                                             False)))
    with FakeCUDA(state):
        yield state


class _Generator(torch.Generator):
    """``torch.Generator(device="cuda")`` as a CPU generator (a CPU-only torch has no CUDA
    generator); a subclass, so ``isinstance(g, torch.Generator)`` still holds."""

    def __new__(cls, device: Any = "cpu") -> "_Generator":
        return super().__new__(cls, "cpu")

    def __init__(self, device: Any = "cpu") -> None:
        pass


def _pin_memory(t: torch.Tensor, *args: Any) -> torch.Tensor:
    """A copy flagged as page-locked (a CPU-only torch cannot pin)."""
    if mark(t) is not None:
        raise FakeDeviceError("cannot pin 'torch.cuda.FloatTensor' only dense CPU tensors can be "
                              "pinned")
    out = t.clone()
    out._fake_pinned = True
    return out


class _Patcher:
    """The ``setattr`` of pytest's monkeypatch, without undo (for a process that ends after)."""

    @staticmethod
    def setattr(obj: Any, name: str, value: Any) -> None:
        setattr(obj, name, value)


def install(count: int = 1, peak_bytes: int = 0) -> dict:
    """Turn the fake GPUs on for the rest of this process (a notebook kernel): the first cell
    of a chapter run by ``test_gpu_chapters.py``. Returns the state."""
    context = fake_gpus(_Patcher(), count, peak_bytes)
    _INSTALLED.append(context)  # a context manager that is collected would exit the mode
    return context.__enter__()


_INSTALLED: list = []
