"""`echo-iad`: one command, one sub-command group per part of the system.

Each group is a module of app/commands/, beside the embedded server and the demo; heavy
imports happen inside the commands, so `--help` stays instant. A failure comes
out as one line (status, message, what to do) with an exit code per kind of
failure (services/client/errors.py); `--debug` adds the traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from app.commands.audit import app as audit_app
from app.commands.console import register as register_console
from app.commands.data import app as data_app
from app.commands.decision import app as decision_app
from app.commands.evaluation import app as eval_app
from app.commands.inspector import register as register_gateway_commands
from app.commands.knowledge import app as knowledge_app
from app.commands.memory import app as memory_app
from app.commands.review import app as review_app
from services.client.errors import BY_STATUS, EXIT_CODE_HELP, CliError, ExitCode, Problem

app = typer.Typer(
    name="echo-iad",
    help=(
        "Echo-IAD: an industrial anomaly inspector built on a multimodal LLM with four experts "
        "(reference, knowledge, reasoning, decision), served over gRPC.\n\n"
        "Start with `echo-iad demo`. Onboard a product with `echo-iad product add`.\n\n"
        f"An error is one line: status, message, what to do. {EXIT_CODE_HELP}"
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
app.add_typer(review_app, name="review")
register_gateway_commands(app)  # serve, inspect, product, demo
register_console(app)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="On an error, print the traceback too (anywhere on the line)."),
) -> None:
    """(--debug is taken out of the arguments by main(), so it works after a sub-command too.)"""


def problem_of(err: BaseException) -> Problem:
    """Any failure that reaches the top as one line for a person, with the exit code of its kind."""
    from services.common.errors import ConfigError, EchoError

    if isinstance(err, CliError):
        return err.problem
    if isinstance(err, ConfigError):
        return Problem("CONFIG", str(err), "fix the file or variable it names", ExitCode.CONFIG)
    if isinstance(err, EchoError):
        code = err.code.name
        return Problem(code, err.message, "", BY_STATUS.get(code, ExitCode.SERVER_ERROR))
    if "grpc" in sys.modules:
        import grpc

        if isinstance(err, grpc.RpcError):
            from services.client.errors import explain_rpc_error

            return explain_rpc_error(err, "the server")
    if isinstance(err, OSError) and err.filename:
        return Problem("INVALID_ARGUMENT", f"cannot use {err.filename}: {err.strerror or err}", "", ExitCode.BAD_INPUT)
    return Problem(
        "INTERNAL",
        f"{type(err).__name__}: {err}",
        "this is a bug in echo-iad: run again with --debug and report the traceback",
        ExitCode.SERVER_ERROR,
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=[a for a in args if a != "--debug"], prog_name="echo-iad")
    except Exception as e:
        if debug:
            import traceback

            traceback.print_exception(e)
        problem = problem_of(e)
        print(f"error: {problem.line()}", file=sys.stderr, flush=True)
        sys.exit(int(problem.exit_code))


if __name__ == "__main__":
    main()
