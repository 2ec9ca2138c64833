"""A CUDA device simulated on the CPU: the CUDA path of the project runs here, with real values, and every operation
that mixes devices, every read of a device value and every blocking copy is caught.

``with SimulatedCuda() as device:`` makes ``torch.device("cuda:0")`` usable without a GPU. A tensor "on the GPU" is an
:class:`OnDevice`: a real CPU tensor (so every value-dependent step runs: pruning, growth, logging) whose ``device`` is
``cuda:0``. The mode (a ``TorchFunctionMode``) sees every call of the torch API made from Python and applies CUDA's
rules to it:

- factories with ``device="cuda"`` (``torch.zeros``, ``torch.empty_like``, ``nn.Module.to``...) give ``OnDevice``
  tensors; an operation on ``OnDevice`` tensors gives ``OnDevice`` tensors;
- **device mixes** raise :class:`DeviceMismatch`: an operation given an ``OnDevice`` tensor and a CPU tensor that is
  not a 0-dim scalar (CUDA accepts CPU scalars), a CPU index into a device tensor or the reverse, a CPU generator
  drawing on the device. Stricter than CUDA on one point: CUDA copies a CPU index tensor or a CPU value given to
  ``x[...] = v`` to the device on every call; here that is a mix, to be made explicit with ``.to(device)``;
- **syncs**, where the CPU waits for the GPU (what ``torch.cuda.set_sync_debug_mode`` reports on a real GPU), are
  recorded in ``device.syncs`` as :class:`Sync` (kind, what, where in the project): a read of a device value
  (``.item()``, ``bool``, ``float``, ``int``, ``.tolist()``, printing, ``torch.equal``, and the operations whose
  output size depends on values: ``nonzero``, ``unique``, ``masked_select``, boolean-mask indexing), a copy to the
  host (``.cpu()``, ``.to("cpu")``), and a blocking copy to the device (``.to(device)`` of a CPU tensor without
  ``non_blocking=True``, ``torch.tensor(data, device=...)``); ``.numpy()`` of a device tensor raises ``TypeError``
  as on CUDA.

What it cannot show: CUDA's kernels and numbers (cuDNN, bfloat16 autocast, which is disabled without CUDA, the
``torch.compile`` code generated for a GPU), streams and asynchronous errors, memory, and the optimizers' ``foreach``
paths (on ``OnDevice`` parameters torch's optimizers take their single-tensor path). Those are
``scripts/gpu_check.sh``'s. Why not ``torch._subclasses.fake_tensor.FakeTensorMode``, which also carries a device
without one: fake tensors hold no values, so nothing that reads one runs (the loader's bookkeeping on the CPU, the
pruning, logging), and without a CUDA device the autograd engine fails on a fake CUDA graph (``backward`` asks for
the device's primary context), so no training step runs at all.
"""
import copy as copy_module
import sys
from typing import Any, Callable, List

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from benchmarks.syncs import Sync, project_frame

DEVICE = torch.device("cuda", 0)
"""The simulated device, as a real CUDA tensor reports it."""


class OnDevice(torch.Tensor):
    """A CPU tensor standing for one on ``DEVICE`` (see the module docstring)."""


class DeviceMismatch(RuntimeError):
    """Tensors of two devices met in one operation (CUDA raises a ``RuntimeError`` there too)."""


READS = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "__complex__", "__repr__", "__str__",
         "__format__", "__contains__", "equal", "allclose", "nonzero", "argwhere", "unique", "unique_consecutive",
         "masked_select", "bincount", "repeat_interleave"}
"""Functions that read the values of a device tensor on the host (by name)."""
TO_NUMPY = {"numpy", "__array__"}
"""Conversions to NumPy: CUDA raises ``TypeError`` for them."""
FROM_HOST_DATA = {"tensor", "as_tensor", "new_tensor"}
"""Factories that copy host data (Python values, CPU tensors) to the target device: a blocking copy."""
METADATA = {"_has_compatible_shallow_copy_type"}
"""Functions that compare tensors without computing with them (any devices)."""


def tensors_in(value: Any) -> List[torch.Tensor]:
    """The tensors in an argument, a list, tuple or dict of them, at any depth."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [tensor for item in value for tensor in tensors_in(item)]
    if isinstance(value, dict):
        return [tensor for item in value.values() for tensor in tensors_in(item)]
    return []


def converted(result: Any, convert: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``result`` with ``convert`` applied to every tensor in it."""
    if isinstance(result, torch.Tensor):
        return convert(result)
    if type(result) in (list, tuple):
        return type(result)(converted(item, convert) for item in result)
    if isinstance(result, tuple):  # named tuples, torch.return_types
        return tree_map(lambda value: convert(value) if isinstance(value, torch.Tensor) else value, result)
    return result


def on_device(value: Any) -> bool:
    return isinstance(value, OnDevice)


def simulated_device(tensor: torch.Tensor) -> torch.device:
    with torch._C.DisableTorchFunctionSubclass():
        return DEVICE if on_device(tensor) else tensor.device


def moved(tensor: torch.Tensor) -> OnDevice:
    """``tensor`` as a device tensor (the same storage)."""
    return tensor if on_device(tensor) else tensor.as_subclass(OnDevice)


def to_host(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as a CPU tensor (the same storage)."""
    return tensor.as_subclass(torch.Tensor) if on_device(tensor) else tensor


def is_cuda(device: Any) -> bool:
    """Whether a ``device=`` argument (a ``torch.device``, a string or a CUDA index) names a CUDA device."""
    return isinstance(device, int) or torch.device(device).type == "cuda"


def caller() -> str:
    """Where the project called the function being simulated (``benchmarks.syncs.project_frame``)."""
    return project_frame(sys._getframe(1))


def function_name(func: Callable) -> str:
    """``x`` of ``torch.x``, ``Tensor.x`` and of a property's ``__get__``/``__set__``."""
    name = getattr(func, "__name__", str(func))
    if name in ("__get__", "__set__"):
        return getattr(getattr(func, "__self__", None), "__name__", name)
    return name


class SimulatedCuda(TorchFunctionMode):
    """The simulation, as a context manager (see the module docstring); ``syncs`` lists the syncs seen so far."""

    def __init__(self):
        super().__init__()
        self.syncs: List[Sync] = []
        self.overwrite = False

    def __enter__(self):
        # nn.Module.to(device) replaces each parameter by its moved tensor instead of swapping its data in place,
        # so that the parameters themselves are OnDevice tensors
        self.overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
        torch.__future__.set_overwrite_module_params_on_conversion(True)
        return super().__enter__()

    def __exit__(self, *exc):
        torch.__future__.set_overwrite_module_params_on_conversion(self.overwrite)
        return super().__exit__(*exc)

    def sync(self, kind: str, what: str) -> None:
        self.syncs.append(Sync(kind, what, caller()))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = function_name(func)
        tensors = tensors_in((args, kwargs))
        device_inputs = any(on_device(t) for t in tensors)
        if name == "device" and getattr(func, "__name__", "") == "__get__":
            return simulated_device(args[0])
        if name == "is_cuda" and getattr(func, "__name__", "") == "__get__":
            return on_device(args[0])
        if name == "is_cpu" and getattr(func, "__name__", "") == "__get__":
            return not on_device(args[0]) and simulated_device(args[0]).type == "cpu"
        if name == "get_device":
            return DEVICE.index if on_device(args[0]) else -1
        if name in TO_NUMPY and device_inputs:
            raise TypeError(f"can't convert {DEVICE} device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                            f"to host memory first (at {caller()})")
        if name == "__deepcopy__":
            return self.deepcopy(*args)
        if name == "__reduce_ex__":  # pickled (torch.save) as the CPU tensor a checkpoint loads with map_location="cpu"
            with torch._C.DisableTorchFunctionSubclass():
                return to_host(args[0]).__reduce_ex__(*args[1:])
        if name in ("to", "cuda", "cpu"):
            return self.transfer(func, name, args, kwargs)
        if name == "copy_":
            return self.copy(func, args, kwargs)
        if "device" in kwargs or name in FROM_HOST_DATA:
            return self.create(func, name, args, kwargs)
        if device_inputs and name not in METADATA:
            self.check_devices(name, tensors)
            if name in READS or (name == "__getitem__" and self.boolean_index(args[1])):
                self.sync("read", name)
        with torch._C.DisableTorchFunctionSubclass():
            result = func(*args, **kwargs)
        return converted(result, moved) if device_inputs else result

    # --- the rules -------------------------------------------------------------------------------------------
    @staticmethod
    def boolean_index(index: Any) -> bool:
        return any(tensor.dtype == torch.bool and tensor.dim() > 0 for tensor in tensors_in(index))

    def check_devices(self, name: str, tensors: List[torch.Tensor]) -> None:
        """CUDA's rule: one device per operation, CPU scalars (0-dim tensors) aside; a CPU index tensor or a CPU value
        of ``x[...] = v`` counts as a mix (see the module docstring)."""
        host = [t for t in tensors if not on_device(t) and t.dim() > 0 and t.device.type != "meta"]
        if host:
            shapes = ", ".join(str(tuple(t.shape)) for t in host)
            raise DeviceMismatch(f"Expected all tensors to be on the same device, but found at least two devices, "
                                 f"{DEVICE} and cpu (torch {name}: CPU tensor(s) of shape {shapes}) at {caller()}")

    @staticmethod
    def deepcopy(source: torch.Tensor, memo: dict) -> torch.Tensor:
        """``copy.deepcopy`` of a tensor: a leaf with the same values, ``requires_grad`` and attributes."""
        if id(source) not in memo:
            with torch._C.DisableTorchFunctionSubclass():
                copy = source.detach().clone()
                if on_device(source):
                    copy = moved(copy)
                copy.requires_grad_(source.requires_grad)
            copy.__dict__ = copy_module.deepcopy(source.__dict__, memo)
            memo[id(source)] = copy
        return memo[id(source)]

    def transfer(self, func, name: str, args, kwargs):
        """``Tensor.to``, ``.cuda`` and ``.cpu``: a copy between the devices (always a new tensor, as on CUDA) or the
        tensor itself when it stays."""
        source = args[0]
        non_blocking = bool(kwargs.get("non_blocking", False))
        if name == "cpu":
            target, rest = torch.device("cpu"), {}
        elif name == "cuda":
            target, rest = DEVICE, {}
            non_blocking = bool(kwargs.get("non_blocking", args[2] if len(args) > 2 else False))
        else:
            target, rest, non_blocking = self.parse_to(args[1:], kwargs)
        if target is None or (target.type == "cuda") == on_device(source):
            with torch._C.DisableTorchFunctionSubclass():
                result = source.to(**rest) if rest else source
            return moved(result) if on_device(source) else result
        rest.pop("copy", None)
        with torch._C.DisableTorchFunctionSubclass():
            copy = source.to(copy=True, **rest)
        if target.type == "cuda":
            if not non_blocking and (source.numel() > 0):
                self.sync("to device", name)
            return moved(copy)
        if target.type != "cpu":
            raise DeviceMismatch(f"the simulation has no device {target} (at {caller()})")
        if not non_blocking:
            self.sync("to host", name)
        return to_host(copy)

    @staticmethod
    def parse_to(args, kwargs):
        """``(target device or None, the other keyword arguments of .to, non_blocking)`` of ``Tensor.to``."""
        if args and isinstance(args[0], torch.Tensor):
            other = args[0]
            return (simulated_device(other), {"dtype": other.dtype},
                    bool(kwargs.get("non_blocking", args[1] if len(args) > 1 else False)))
        device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*args, **kwargs)
        rest = {"dtype": dtype} if dtype is not None else {}
        if memory_format is not None:
            rest["memory_format"] = memory_format
        if kwargs.get("copy", False):
            rest["copy"] = True
        return (torch.device(device) if device is not None else None), rest, non_blocking

    def copy(self, func, args, kwargs):
        """``destination.copy_(source)``: a copy within a device, or between them (a sync unless non-blocking)."""
        destination, source = args[0], args[1]
        non_blocking = bool(kwargs.get("non_blocking", args[2] if len(args) > 2 else False))
        if isinstance(source, torch.Tensor) and on_device(destination) != on_device(source) and source.dim() > 0:
            if on_device(source) or not non_blocking:
                self.sync("to host" if on_device(source) else "to device", "copy_")
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)

    def create(self, func, name: str, args, kwargs):
        """A factory with a ``device`` (``torch.zeros(..., device=d)``; ``None``: ``new_*`` and ``*_like`` on their
        tensor's device, others on the CPU), or a copy of host data (``torch.tensor``, ``as_tensor``,
        ``new_tensor``: a blocking copy when it crosses to the device)."""
        data = (args[1] if name == "new_tensor" else args[0]) if name in FROM_HOST_DATA else None
        if kwargs.get("device") is not None:
            cuda = is_cuda(kwargs["device"])
            kwargs["device"] = "cpu"
        elif name.startswith("new_") or name.endswith("_like"):
            cuda = on_device(args[0])
        else:
            cuda = on_device(data)
        generator = kwargs.get("generator")
        if cuda and generator is not None and generator.device.type != "cuda":
            raise DeviceMismatch(f"Expected a 'cuda' device type for generator but found 'cpu' (torch {name} at "
                                 f"{caller()})")
        if name in FROM_HOST_DATA and cuda != on_device(data):
            self.sync("to device" if cuda else "to host", name)
        with torch._C.DisableTorchFunctionSubclass():
            result = func(*args, **kwargs)
        return converted(result, moved if cuda else to_host)


class SimulatedGraphs:
    """``agents.step.StepGraphs`` on the simulated device, for ``agent``'s steps: what CUDA's graphs would make of
    them, checked without a GPU.

    A capture runs nothing and remembers what a real graph holds as constants: the optimizer's learning rates, its
    state tensors (a graph writes to the ones it was captured with) and every layer's training mode. A replay fails
    when any of them changed since (a real one would run with the stale ones), then runs the captured function, which
    reads the static tensors, and fails when that made a sync (a real capture fails when a device value is read).
    ``warm_ups``, ``captures`` and ``replays`` count the calls."""

    def __init__(self, simulation: SimulatedCuda, agent):
        self.simulation = simulation
        self.agent = agent
        self.warm_ups = self.captures = self.replays = 0

    def constants(self):
        optimizer = self.agent.optimizer
        return ([group["lr"] for group in optimizer.param_groups],
                [id(value) for state in optimizer.state.values() for value in state.values()
                 if isinstance(value, torch.Tensor)],
                [module.training for module in self.agent.model.modules()])

    def warm_up(self, step):
        self.warm_ups += 1
        return step()

    def capture(self, step):
        self.captures += 1
        held, terms = self.constants(), {}

        def replay():
            assert self.constants() == held, "a graph replayed after its learning rates, state or modes changed"
            start = len(self.simulation.syncs)
            terms.update(step())
            assert self.simulation.syncs[start:] == [], f"a captured step synced: {self.simulation.syncs[start:]}"
            self.replays += 1

        return replay, terms
