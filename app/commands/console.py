"""`echo-iad console`: the operator's web page."""

from __future__ import annotations

from typing import Annotated

import typer

from app.commands.inspector import Application, Server


def console(
    server: Server = "127.0.0.1:50051",
    application: Application = "",
    host: Annotated[
        str, typer.Option(help="Bind address. Loopback by default: the console has no login; put a proxy in front.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8080,
    line: Annotated[str, typer.Option(help="The production line shown first.")] = "default",
) -> None:
    """Open the operator console: recent inspections (live, with filters and verdicts in colour), one inspection
    beside its reference and heat map, products with their normal images and knowledge, and an inspect form.

    It reaches the Inspector over gRPC like any client, so it works against `echo-iad serve` and a Ray cluster
    (--server HOST:9000 --application inspector) alike.
    """
    import uvicorn

    from services.console.app import ConsoleSettings, create_app

    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: the console has no login and will listen on {host}; anyone who reaches it can use it")
    typer.echo(f"Echo-IAD console on http://{host}:{port}/ (Inspector at {server})")
    app = create_app(ConsoleSettings(server=server, application=application, line=line))
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command()(console)
