"""The environment a local Ray in a test needs for one of Serve's ingresses (deploy/launch.py INGRESSES)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from services.common.ports import free_port


def ingress_environment(ingress: str) -> dict[str, str]:
    """The environment a local Ray needs for this ingress, with HAProxy mode's fixed side ports (stats 8404,
    Prometheus 9101, the fallback proxy's 8500/9500) moved to free ones, so neighbouring clusters do not collide."""
    from deploy.launch import ingress_env

    env = ingress_env(ingress)
    for name in (
        "RAY_SERVE_HAPROXY_STATS_PORT",
        "RAY_SERVE_HAPROXY_METRICS_PORT",
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
    ):
        env[name] = str(free_port())
    return env


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ with `env` set (a local Ray and every process it starts inherit it), restored after."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
