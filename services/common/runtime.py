"""A backbone on an optimised CPU runtime, ONNX Runtime or OpenVINO: the evidence stage's (evidence.runtime) and the
embedding stage's offline image encoder (embedding.runtime).

On a CPU line PC the backbone forward is most of an analysis, so the feature graph of a product's choice
(the backbone up to its deepest tapped block, the taps, PatchCore's aggregation) is exported once to ONNX and
run by the chosen runtime. The export is cached on disk, named by the features' backbone id (model, weights
hash, blocks, input size, pooling, dim) and the exporter's version: a product that chose another block set
or input size gets its own file. An export is checked against torch on one probe batch the first time each
runtime loads it; the check is recorded beside the file (`<file>.checked`: the file's sha256 and the runtimes
and versions that agreed), so later starts load it without a torch forward, and a file whose bytes changed (a
truncated write, a stale export) is checked again. A file that does not load or does not agree is exported
again. Writes are atomic (a temporary file renamed into place), so concurrent starts never read half a file.

The torch path stays for CUDA; the runtime is fp32 (OpenVINO's bf16 default on CPUs with AMX is turned off),
so scores stay within a rounding of torch's and a bank built on one runtime serves the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from services.common.errors import ConfigError
from services.common.images import file_digest

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime", "openvino")
EXPORT_VERSION = 1  # bump when the exported graph changes meaning (cached files of older versions are ignored)
OPSET = 17
PROBE_TOLERANCE = 1e-3  # the largest |runtime - torch| on the probe, relative to torch's largest |feature|


def cache_path(cache_dir: str | Path, backbone_id: str) -> Path:
    """The cached export of these features: readable prefix, then a hash of everything that shapes the graph."""
    import torch

    key = f"{backbone_id}|export={EXPORT_VERSION}|opset={OPSET}|torch={torch.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", backbone_id.split("[", 1)[0])[:40]
    return Path(cache_dir).expanduser() / f"{stem}-{digest}.onnx"


def _graph(fn: Callable[[Any], Any], model: Any) -> Any:
    """`fn` as a torch module that owns `model`, so its weights export as initializers, not traced constants."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            return fn(x)

    return Graph().eval()


def export_onnx(fn: Callable[[Any], Any], model: Any, input_size: int, path: Path) -> None:
    """Trace `fn` ((n, 3, S, S) pixels -> (n, h, w, D) features) to ONNX at `path`, atomically; batch is dynamic."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings: shapes are fixed per input size, by design
            torch.onnx.export(
                _graph(fn, model),
                (torch.zeros(2, 3, input_size, input_size),),
                tmp,
                input_names=["pixels"],
                output_names=["features"],
                dynamic_axes={"pixels": {0: "n"}, "features": {0: "n"}},
                opset_version=OPSET,
                dynamo=False,
            )
        os.replace(tmp, path)
    except Exception:
        Path(tmp).unlink(missing_ok=True)
        raise


def _checked_path(path: Path) -> Path:
    return path.with_name(path.name + ".checked")


def _runtime_tag(runtime: str) -> str:
    """The runtime and its version: an upgraded runtime checks the export again."""
    from importlib.metadata import version

    return f"{runtime}=={version(runtime)}"


def was_checked(path: Path, runtime: str) -> bool:
    """Whether this runtime (this version) already agreed with torch on exactly these bytes."""
    try:
        record = json.loads(_checked_path(path).read_text())
        return _runtime_tag(runtime) in record.get("runtimes", []) and record.get("sha256") == file_digest(path)
    except (OSError, ValueError, AttributeError):
        return False


def record_check(path: Path, runtime: str) -> None:
    """Add this runtime to the file's check record, atomically (a record of other bytes is replaced)."""
    checked = _checked_path(path)
    digest = file_digest(path)
    try:
        record = json.loads(checked.read_text())
        runtimes = record.get("runtimes", []) if record.get("sha256") == digest else []
    except (OSError, ValueError, AttributeError):
        runtimes = []
    body = json.dumps({"sha256": digest, "runtimes": sorted({*runtimes, _runtime_tag(runtime)})})
    try:
        fd, tmp = tempfile.mkstemp(prefix=checked.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, checked)
    except OSError as e:  # a read-only cache still serves; the next start checks again
        log.warning("%s: cannot record the export check (%s)", runtime, type(e).__name__)


class OrtRunner:
    """An ONNX Runtime CPU session over the exported graph."""

    name = "onnxruntime"

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # idle threads sleep instead of spinning: a line PC's few cores are shared with decoding and search
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"pixels": pixels})[0]


class OpenVinoRunner:
    """An OpenVINO CPU compiled model over the exported graph, in fp32, tuned for latency."""

    name = "openvino"

    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",  # not bf16 where the CPU has it: scores must match torch's
        }
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self._local = threading.local()  # an infer request is not thread-safe: one per calling thread

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer({0: pixels})
        return np.array(request.get_output_tensor(0).data, copy=True)


Runner = OrtRunner | OpenVinoRunner


def compile_features(
    runtime: str,
    fn: Callable[[Any], Any],
    model: Any,
    input_size: int,
    backbone_id: str,
    cache_dir: str | Path,
    setting: str = "evidence.runtime",
) -> Runner:
    """The runtime's runner for these features (`fn`, computed by the torch module `model`): the cached export
    when it loads and agrees with torch, else a fresh export. ConfigError names `setting` (the stage's runtime
    key) when the graph cannot be exported or run."""
    import torch

    if runtime not in RUNTIMES[1:]:
        raise ConfigError(f"{setting} {runtime!r} is not one of {', '.join(RUNTIMES)}")
    path = cache_path(cache_dir, backbone_id)
    make = OrtRunner if runtime == "onnxruntime" else OpenVinoRunner
    threads = max(1, torch.get_num_threads())
    if path.is_file() and was_checked(path, runtime):
        try:
            return make(path, threads)
        except Exception as e:  # checked once, unreadable now: check (and export) again below
            log.warning(
                "%s %s: checked export for %s does not load (%s)", setting, runtime, backbone_id, type(e).__name__
            )
    probe = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, input_size, input_size), np.float32))
    with torch.inference_mode():
        expected = fn(probe).float().numpy()
    for attempt in ("cached", "fresh"):
        if attempt == "fresh" or not path.is_file():
            try:
                export_onnx(fn, model, input_size, path)
            except Exception as e:
                raise ConfigError(f"{setting} {runtime!r}: the feature graph cannot be exported: {e}") from e
            log.info("%s %s: exported %s", setting, runtime, backbone_id)
        try:
            runner = make(path, threads)
            got = runner(probe.numpy())
            err = float(np.abs(got - expected).max() / max(float(np.abs(expected).max()), 1e-12))
            if got.shape == expected.shape and err <= PROBE_TOLERANCE:
                record_check(path, runtime)
                return runner
            why = f"disagrees with torch (shape {got.shape}, relative error {err:.2e})"
        except Exception as e:  # a truncated or foreign file: export again
            why = f"does not load ({type(e).__name__})"
        if attempt == "fresh":
            raise ConfigError(f"{setting} {runtime!r}: the exported feature graph {why}")
        log.warning("%s %s: cached export for %s %s; exporting again", setting, runtime, backbone_id, why)
    raise AssertionError("unreachable")
