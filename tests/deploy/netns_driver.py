"""A Ray driver that lives in the head node's network namespace: one JSON command per stdin line, one answer per line.

A Ray driver needs a raylet on its own host, and the test process sits outside
every node's namespace, so netns_cluster.py runs this script in the head's
namespace (`ip netns exec`) and talks to it over pipes. One long-lived driver
pays Ray's connect cost once. Answers are the lines that start with ANSWER
(Ray may print to stdout too).

    {"op": "deploy", "config": {...}}   deploy a Serve config (deploy.launch.deploy)
    {"op": "replicas"}                  {app: {deployment: [{"node_ip", "state"}]}} from Serve's controller
    {"op": "apps"}                      {app: status}
    {"op": "nodes"}                     alive nodes: [{"ip", "resources"}]
"""

from __future__ import annotations

import json
import sys
from typing import Any

ANSWER = "@@answer "


def replicas() -> dict[str, dict[str, list[dict[str, str]]]]:
    """Every replica's node and state, as Serve's controller reports them (the REST API's serve details)."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeInstanceDetails

    details = ServeInstanceDetails(**_get_global_client().get_serve_details())
    return {
        app_name: {
            dep_name: [{"node_ip": r.node_ip or "", "state": str(r.state.value)} for r in dep.replicas]
            for dep_name, dep in app.deployments.items()
        }
        for app_name, app in details.applications.items()
    }


def apps() -> dict[str, str]:
    from ray import serve

    return {name: str(st.status.value) for name, st in serve.status().applications.items()}


def nodes() -> list[dict[str, Any]]:
    import ray

    return [{"ip": n["NodeManagerAddress"], "resources": n["Resources"]} for n in ray.nodes() if n["Alive"]]


def deploy(config: dict[str, Any]) -> None:
    from deploy.launch import deploy as deploy_config

    deploy_config(config)


def main() -> None:
    import ray

    ray.init(address=sys.argv[1], namespace="serve", log_to_driver=False, logging_level="WARNING")
    commands = {"deploy": deploy, "replicas": replicas, "apps": apps, "nodes": nodes}
    print(ANSWER + json.dumps({"ok": True, "result": "connected"}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.pop("op")
        try:
            answer = {"ok": True, "result": commands[op](**cmd)}
        except Exception as e:  # the test reads the error; the driver keeps serving
            answer = {"ok": False, "error": f"{op}: {type(e).__name__}: {e}"}
        print(ANSWER + json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
