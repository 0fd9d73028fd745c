"""The ``vigil`` command line (typer)."""
