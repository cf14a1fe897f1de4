"""Byte-level, coverage-guided fuzzing (atheris) of every RPC of every service on an in-process embedded server.

Each input picks an RPC and sends either its raw bytes as the request (malformed
protobuf), a request built from those bytes (odd strings, numbers, option maps,
nested messages: loadtests/kit/fuzz.py), or a request whose image is those bytes.
Every reply must be a defined status with a one-line message (loadtests/kit/fuzz.py, verdict).
The server code (`services`) is instrumented, so libFuzzer steers towards new paths.

    python -m loadtests.drills.fuzz_rpcs --runs 5000 --seconds 600

Prints one JSON line: inputs tried, statuses seen, crashes (replies that were not a
defined status, messages or OK answers showing a path, an address or a repr, or the server
failing its health check at the end), the tracebacks the server logged (any log record
carrying an exception, "Task exception was never retrieved" included, and exceptions in threads
or unraisable ones), and the time.
Exit status 1 when there was a crash.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter

import atheris

with atheris.instrument_imports(include=["services"]):
    import grpc

    from loadtests.kit.app import BackgroundServer
    from loadtests.kit.fuzz import BAD_STRINGS, Rpc, answer_leak, build, call_reply, image_corpus, rpcs, verdict
    from services.client import InspectorClient
    from services.common.images import encode_png
    from services.config import load_settings
    from services.mmad.render import render_normal


class _Provided:
    """atheris' FuzzedDataProvider as a kit.fuzz Source."""

    def __init__(self, fdp: atheris.FuzzedDataProvider) -> None:
        self.fdp = fdp

    def integer(self, lo: int, hi: int) -> int:
        return self.fdp.ConsumeIntInRange(lo, hi)

    def floating(self) -> float:
        return self.fdp.ConsumeRegularFloat() if self.fdp.ConsumeBool() else self.fdp.ConsumeFloat()

    def text(self) -> str:
        if self.fdp.ConsumeBool():
            return BAD_STRINGS[self.fdp.ConsumeIntInRange(0, len(BAD_STRINGS) - 1)]
        return self.fdp.ConsumeUnicodeNoSurrogates(self.fdp.ConsumeIntInRange(0, 64))

    def blob(self) -> bytes:
        return self.fdp.ConsumeBytes(self.fdp.ConsumeIntInRange(0, 2048))


class _Tracebacks(logging.Handler):
    """Counts what the server logged with a traceback; the first few, by logger and message, as examples."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.exc_text or "Traceback (most recent call last)" in record.getMessage():
            self.seen.append(f"{record.name}: {record.getMessage()[:200]}")

    def watch(self) -> None:
        """On the root logger, and for exceptions that reach no logger (threads, unraisable ones)."""
        logging.getLogger().addHandler(self)
        import threading

        threading.excepthook = lambda a: self.seen.append(f"thread: {a.exc_type.__name__}: {a.exc_value}"[:200])
        sys.unraisablehook = lambda u: self.seen.append(f"unraisable: {u.exc_type.__name__}: {u.exc_value}"[:200])


def _known_answers(channel: grpc.Channel, targets: list[Rpc], image: bytes) -> list[str]:
    """Search and Stats over the memory just built, checked like every fuzzed answer: random line ids seldom
    find that memory, and these are the answers that carry stored images' ids (never their paths)."""
    from echo.v1 import common_pb2, embedding_pb2, retrieval_pb2

    by_path = {r.path: r for r in targets}
    embed = by_path["/echo.v1.Embedding/EmbedImages"]
    code, details, reply = call_reply(
        channel, embed, embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=image)]).SerializeToString()
    )
    if code != grpc.StatusCode.OK:
        return [f"{embed.path}: the known image was refused ({code.name}: {details[:200]})"]
    vector = embedding_pb2.EmbedImagesResponse.FromString(reply).embeddings[0].values
    asks = {
        "/echo.v1.Retrieval/Search": retrieval_pb2.SearchRequest(
            vector=vector, line_id="line-1", category="screw", mode=common_pb2.K_SHOT, k=3
        ),
        "/echo.v1.Retrieval/Stats": retrieval_pb2.StatsRequest(line_id="line-1", list_limit=10),
    }
    problems = []
    for path, req in asks.items():
        body = req.SerializeToString()
        code, details, reply = call_reply(channel, by_path[path], body)
        if problem := verdict(code, details, body) or answer_leak(by_path[path], reply, body):
            problems.append(f"{path}: {problem}")
        elif not reply:
            problems.append(f"{path}: the memory just built gave an empty answer")
    return problems


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="Inputs to try.")
    parser.add_argument("--seconds", type=float, default=300.0, help="Stop after this long, whatever --runs says.")
    parser.add_argument("--data-dir", default="", help="Server state folder (default: a temporary one).")
    parser.add_argument("--model-cache", default="", help="decision.model_cache (unused by the random backend).")
    args, libfuzzer_args = parser.parse_known_args()

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="echo-fuzz-")
    overrides = {"model_cache": args.model_cache} if args.model_cache else {}
    settings = load_settings(
        data_dir=data_dir, server={"port": 0}, decision={"backend": "random", **overrides}
    )  # the real decision model answers the same checks, slower
    tracebacks = _Tracebacks()
    tracebacks.watch()
    server = BackgroundServer(settings).start()
    with InspectorClient(server.address) as c:
        images = [encode_png(render_normal("screw", np.random.default_rng(i), size=96)) for i in range(3)]
        c.add_normal_images("line-1", "screw", images, dataset="Synthetic")
    channel = grpc.insecure_channel(server.address)
    targets, corpus = rpcs(), image_corpus()
    statuses: Counter[str] = Counter()
    problems = _known_answers(channel, targets, images[0])
    started = time.monotonic()

    def finish() -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=60)
            healthy = resp.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            healthy = False
        if not healthy:
            problems.append("the server was not SERVING after the run")
        problems.extend(f"traceback logged: {t}" for t in tracebacks.seen)
        line = {
            "bench": "fuzz_rpcs",
            "fuzzer": "atheris",
            "inputs": sum(statuses.values()),
            "rpcs": len(targets),
            "statuses": dict(sorted(statuses.items())),
            "crashes": len(problems),
            "examples": problems[:5],
            "tracebacks": len(tracebacks.seen),
            "healthy_after": healthy,
            "seconds": round(time.monotonic() - started, 1),
        }
        print(json.dumps(line), flush=True)
        os._exit(1 if problems else 0)  # libFuzzer never returns; end here, with our own summary

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        rpc = targets[fdp.ConsumeIntInRange(0, len(targets) - 1)]
        mode = fdp.ConsumeIntInRange(0, 2)
        if mode == 0:
            body = fdp.ConsumeBytes(fdp.remaining_bytes())  # malformed protobuf, mostly
        else:
            msg = build(rpc.request, _Provided(fdp), corpus)
            if mode == 2:  # the image fields get the rest of the bytes as they are
                raw = fdp.ConsumeBytes(fdp.remaining_bytes())
                for f in msg.DESCRIPTOR.fields:
                    if f.message_type is not None and f.message_type.full_name == "echo.v1.Image":
                        field = getattr(msg, f.name)
                        if f.is_repeated:
                            field.add().data = raw
                        else:
                            field.data = raw
            body = msg.SerializeToString()
        code, details, reply = call_reply(channel, rpc, body)
        statuses[code.name] += 1
        problem = verdict(code, details, body) or answer_leak(rpc, reply, body)
        if problem:
            problems.append(f"{rpc.path}: {problem}")
        if sum(statuses.values()) >= args.runs or time.monotonic() - started >= args.seconds:
            finish()

    defaults = {
        "-max_len=": "8192",  # room for an image
        "-rss_limit_mb=": "16384",  # the server and its models live in this process: 2 GB is not a leak here
        "-artifact_prefix=": f"{data_dir}/",  # libFuzzer's crash files go beside the server's state
    }
    for flag, value in defaults.items():
        if not any(a.startswith(flag) for a in libfuzzer_args):
            libfuzzer_args.append(flag + value)
    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
