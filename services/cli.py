"""`echo-iad`: one command, one sub-command group per part of the system.

Each group lives beside the code it drives (services/<part>/cli.py); heavy
imports happen inside the commands, so `--help` stays instant.
"""

from __future__ import annotations

import typer

from services.audit.cli import app as audit_app
from services.console.cli import register as register_console
from services.decision.cli import app as decision_app
from services.evaluation.cli import app as eval_app
from services.gateway.cli import register as register_gateway_commands
from services.knowledge.cli import app as knowledge_app
from services.mmad.cli import app as data_app
from services.retrieval.cli import app as memory_app

app = typer.Typer(
    name="echo-iad",
    help=(
        "Echo-IAD: an industrial anomaly inspector built on a multimodal LLM with four experts "
        "(reference, knowledge, reasoning, decision), served over gRPC.\n\n"
        "Start with `echo-iad demo`. Onboard a product with `echo-iad product add`."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data_app, name="data")
app.add_typer(memory_app, name="memory")
app.add_typer(knowledge_app, name="knowledge")
app.add_typer(decision_app, name="decision")
app.add_typer(eval_app, name="eval")
app.add_typer(audit_app, name="audit")
register_gateway_commands(app)  # serve, inspect, product, demo
register_console(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
