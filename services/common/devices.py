"""Two CUDA streams for a prepare-then-run pipeline, and the few calls that hand tensors between them.

A pipeline (services/common/pipeline.py) prepares batch N+1 on one thread while the
model runs batch N on another. On CUDA each thread issues its work on its own stream,
so the GPU overlaps them too, and a prepared batch crosses to the model stream with an
event, not a host-side wait:

    prepare thread:  with streams.preparing(): ...kernels...; ready = streams.ready()
    model thread:    with streams.running(ready, tensors): ...model...

`ready()` records an event on the prepare stream after the batch's last kernel;
`running()` makes the model stream wait for that event (on the GPU) and tells the
caching allocator that the model stream uses those tensors (`record_stream`), so their
memory is not handed to the next batch while the model still reads it. On the CPU
every call here does nothing: the same code runs, in order, on the threads alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any


class DeviceStreams:
    """The prepare and model streams of one device (CUDA), or no-ops (CPU)."""

    def __init__(self, device: Any) -> None:
        import torch

        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.prepare_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.model_stream = torch.cuda.Stream(self.device) if self.cuda else None

    @contextlib.contextmanager
    def preparing(self) -> Iterator[None]:
        """Kernels issued inside go to the prepare stream."""
        if self.prepare_stream is None:
            yield
            return
        import torch

        with torch.cuda.stream(self.prepare_stream):
            yield

    def ready(self) -> Any:
        """An event marking that everything issued on the prepare stream so far is done (None on the CPU)."""
        if self.prepare_stream is None:
            return None
        import torch

        event = torch.cuda.Event()
        event.record(self.prepare_stream)
        return event

    @contextlib.contextmanager
    def running(self, ready: Iterable[Any] = (), tensors: Iterable[Any] = ()) -> Iterator[None]:
        """Kernels issued inside go to the model stream, after the prepared batches' `ready` events."""
        if self.model_stream is None:
            yield
            return
        import torch

        for event in ready:
            if event is not None:
                self.model_stream.wait_event(event)
        for t in tensors:
            t.record_stream(self.model_stream)
        with torch.cuda.stream(self.model_stream):
            yield

    def to_host(self, tensor: Any) -> Any:
        """A device tensor's values on the host, copied through pinned memory on CUDA; waits for the copy.

        Call it inside `running()`: the copy is ordered after the model's kernels on the model stream.
        """
        if not self.cuda:
            return tensor.cpu()
        import torch

        out = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        out.copy_(tensor, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(self.device))
        done.synchronize()  # this thread waits for its own stream only, not for the prepare stream
        return out


def pinned(tensor: Any) -> Any:
    """A host tensor in page-locked memory (PyTorch's caching host allocator), so its copy to the GPU is async."""
    return tensor.pin_memory()
