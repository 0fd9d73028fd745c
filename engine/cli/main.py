"""The ``vigil`` command line.

Every command that prints data prints a table by default and JSON with ``--json``.
Errors print one sentence (and a tip) on stderr and exit with the code documented in
the README (see :mod:`engine.errors`).
"""

from __future__ import annotations

import sys

import typer

from engine import __version__
from engine.cli import (
    agent,
    attest,
    audit,
    decide,
    feeds,
    fleet,
    images,
    lab,
    patch,
    policy,
    predict,
    provision,
    pvdb,
    report,
    rollout,
    serve,
)
from engine.errors import VigilError

app = typer.Typer(
    name="vigil",
    help="Attested VM placement with predictive patching.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(feeds.app, name="feeds")
app.add_typer(pvdb.app, name="pvdb")
app.add_typer(policy.policy_app, name="policy")
app.add_typer(policy.bundle_app, name="bundle")
app.add_typer(policy.decisions_app, name="decisions")
app.add_typer(policy.schema_app, name="schema")
app.add_typer(attest.app, name="attest")
app.add_typer(predict.app, name="predict")
app.add_typer(agent.app, name="agent")
app.add_typer(fleet.app, name="fleet")
app.add_typer(rollout.app, name="rollout")
app.add_typer(images.app, name="images")
app.add_typer(patch.app, name="patch")
app.add_typer(report.app, name="report")
app.add_typer(audit.app, name="audit")
app.command("decide")(decide.decide)
app.command("serve")(serve.serve)
app.add_typer(serve.tokens_app, name="tokens")
app.add_typer(provision.app, name="provision")
app.add_typer(lab.app, name="lab")


@app.command()
def version() -> None:
    """Print Vigil's version."""
    typer.echo(__version__)


def run() -> None:
    """Console-script entry point: run the app and turn VigilError into an exit code.

    A usage error found by the command-line parser (a missing argument, a value of the
    wrong type, an unknown option) is one ``error:`` line too, with exit code 2."""
    from typer._click.exceptions import NoArgsIsHelpError, UsageError

    try:
        code = app(standalone_mode=False)
    except VigilError as exc:
        print(f"error: {exc.diagnostics()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except NoArgsIsHelpError:
        sys.exit(2)  # the group's help is already printed
    except UsageError as exc:
        message = " ".join(exc.format_message().split())
        print(f"error: {message}", file=sys.stderr)
        if exc.ctx is not None:
            print(f"Tip: see `{exc.ctx.command_path} --help`", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
