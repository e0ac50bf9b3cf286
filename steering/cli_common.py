"""Small helpers shared by the command-line modules of ``steering`` and ``interp`` (importing
this module stays light: no torch).

    from steering.cli_common import console, fail, subcommand_group
    toy = subcommand_group(app, "toy", "Train the small toy models.")   # reused if already registered
    fail("what went wrong and how to fix it")                            # red message, exit code 2
"""
from __future__ import annotations


def console():
    from rich.console import Console

    return Console()


def fail(msg: str):
    """Print one clear error and exit with status 2."""
    import typer

    console().print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(2)


def subcommand_group(app, name: str, help: str = ""):
    """The sub-typer registered on ``app`` as ``name``; created and added when missing, so two
    packages can add commands to one group (e.g. ``interp toy ...``)."""
    import typer

    for g in getattr(app, "registered_groups", []):
        sub = g.typer_instance
        gname = g.name or getattr(getattr(sub, "info", None), "name", None)
        if sub is not None and gname == name:
            return sub
    sub = typer.Typer(add_completion=False, no_args_is_help=True, help=help)
    app.add_typer(sub, name=name, help=help)
    return sub
