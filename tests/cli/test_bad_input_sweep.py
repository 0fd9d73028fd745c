"""Every ``vigil`` command, found by walking the command tree itself (a new command is
swept without touching this file), run with bad input: missing files, malformed files,
values of the wrong type and bad settings in the environment. Each must end in exactly
one ``error:`` line on stderr and the README's exit code for that kind of failure, never
a traceback, and key text put where a key path belongs is never echoed.

The sweep runs in-process (as the console script does, :mod:`tests.clirun`); servers and
child processes are stopped before they start, so a command that would go on to serve or
spawn despite its bad input is reported as such. A handful of cases also run as real
subprocesses, the way a user meets them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.core import TyperGroup

from engine.cli import main
from engine.cli.main import app, run

ROOT = Path(__file__).resolve().parents[2]

# The README's exit codes (its "Exit codes" table) for the kinds of failure swept here.
EXIT_USAGE, EXIT_CONFIG, EXIT_INPUT, EXIT_DATABASE, EXIT_NOT_FOUND = 2, 3, 4, 5, 6
EXPECTED = {
    # a file that does not exist: not found, or no database yet where the file is one
    "missing": {EXIT_NOT_FOUND, EXIT_DATABASE},
    # a file that is not what it should be: a bad input document (usage), a file that
    # could not be read (input), a database file that is not one
    "malformed": {EXIT_USAGE, EXIT_INPUT, EXIT_DATABASE},
    "wrong type": {EXIT_USAGE},
}

PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg"
    "c2VjcmV0c2VjcmV0\n-----END PRIVATE KEY-----\n"
)
PEM_FRAGMENTS = ("BEGIN PRIVATE KEY", "c2VjcmV0c2VjcmV0")

# Settings given bad values, as users did: (variable, value, what the message names)
BAD_SETTINGS = [
    ("VIGIL_FEED_URLS", "not json", "feed_urls"),
    ("VIGIL_POLICY_ROOTS", "vigil,site", "policy_roots"),
    ("VIGIL_ATTEST_REFERENCE_KEYS", "/x.pem", "attest_reference_keys"),
    ("VIGIL_BUNDLE_VERIFICATION_KEY", PEM, "bundle_verification_key"),
    ("VIGIL_ATTEST_RESULT_KEY", PEM, "attest_result_key"),
    ("VIGIL_DECISION_TIMEOUT", "inf", "decision_timeout"),
    ("VIGIL_DB", "", "db"),
]

# Parameters that name what a command writes, not what it reads.
OUTPUTS = {"out", "output", "html", "report", "plots", "trace", "state", "public"}


class _WouldStart(BaseException):
    """Raised where a command would start a server or a child process."""


@dataclass(frozen=True)
class Outcome:
    code: int | str
    """The exit code, or ``"started"`` when the command went on to serve or spawn."""
    out: str
    err: str


def _leaves(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, TyperGroup):
            yield from _leaves(command, (*path, name))
        else:
            yield (*path, name), command


TREE = typer.main.get_command(app)
COMMANDS = list(_leaves(TREE))


def _kind(param: Any) -> str:
    bare = param.bare_type()
    if param.name in OUTPUTS:
        return "output"
    if bare is Path:
        return "path"
    if bare in (int, float):
        return "number"
    if bare is bool:
        return "flag"
    return "text"


def _first_choice(param: Any) -> str | None:
    choices = getattr(param.type_descriptor.annotation, "__members__", None)
    if choices:
        return str(next(iter(choices.values())).value)
    return None


def _args(command: Any, path_value: Path, out_dir: Path, *, inputs: bool) -> list[str]:
    """Arguments filling every required parameter (and, with ``inputs``, every optional
    input file) with ``path_value`` where a path goes and a plain value elsewhere."""
    args: list[str] = []
    for param in command.params:
        kind = _kind(param)
        if kind == "flag" or not (param.required or (inputs and kind == "path")):
            continue
        if kind == "path":
            value = str(path_value)
        elif kind == "output":
            value = str(out_dir / param.name)
        elif kind == "number":
            value = "1"
        else:
            value = _first_choice(param) or "x"
        args += [value] if param.param_type_name == "argument" else [param.opts[0], value]
    return args


def _number_option(command: Any) -> str | None:
    for param in command.params:
        if _kind(param) == "number" and param.param_type_name == "option":
            return str(param.opts[0])
    return None


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: no VIGIL_* settings, every default file in ``tmp_path``, the
    working folder there too (nothing lands in the repository)."""
    import os

    import uvicorn

    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.chdir(tmp_path)

    def would_start(*args: Any, **kwargs: Any) -> None:
        raise _WouldStart

    monkeypatch.setattr(uvicorn.Server, "run", would_start)
    monkeypatch.setattr(uvicorn, "run", would_start)
    monkeypatch.setattr(subprocess.Popen, "__init__", would_start)
    # the tree is built once: run() calls it as it calls the Typer app (building it takes
    # most of a second, which a few hundred runs cannot afford)
    monkeypatch.setattr(main, "app", TREE)
    return tmp_path


def _vigil(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str] | None = None,
) -> Outcome:
    out_dir = Path("out")  # each run writes its outputs afresh (the fixture's cwd)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    with monkeypatch.context() as m:
        for name, value in (env or {}).items():
            m.setenv(name, value)
        m.setattr(sys, "argv", ["vigil", *args])
        code: int | str
        try:
            run()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        except _WouldStart:
            code = "started"
    out, err = capsys.readouterr()
    return Outcome(code, out, err)


def _check(outcome: Outcome, expected: set[int], what: str) -> None:
    assert "Traceback" not in outcome.err + outcome.out, f"{what}:\n{outcome.err}"
    assert outcome.code in expected, (
        f"{what}: exit {outcome.code}, expected {sorted(expected)}\n{outcome.err}"
    )
    lines = outcome.err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, f"{what}: {len(errors)} error lines\n{outcome.err}"
    others = [line for line in lines if line.strip() and not line.startswith(("error:", "Tip:"))]
    assert not others, f"{what}: more than the error line and its tip\n{outcome.err}"
    for fragment in PEM_FRAGMENTS:
        assert fragment not in outcome.err + outcome.out, f"{what}: key text echoed"


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(path) for path, _ in COMMANDS]
)
def test_bad_input(
    path: tuple[str, ...],
    command: Any,
    world: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = " ".join(path)
    absent = world / "absent" / "file.json"
    malformed = world / "malformed.json"
    malformed.write_bytes(b'{"schema_version": 1, "host": [\xff\xfe')
    out_dir = Path("out")
    takes_files = any(_kind(p) == "path" for p in command.params)
    if takes_files:
        for kind, file in (("missing", absent), ("malformed", malformed)):
            args = [*path, *_args(command, file, out_dir, inputs=True)]
            expected = EXPECTED[kind]
            if kind == "malformed" and any(p.name == "config" for p in command.params):
                expected = expected | {EXIT_CONFIG}  # a build configuration that is not one
            _check(_vigil(capsys, monkeypatch, args), expected, f"{kind}: {args}")
    number = _number_option(command)
    if number is not None:
        args = [*path, *_args(command, absent, out_dir, inputs=False), number, "many"]
        outcome = _vigil(capsys, monkeypatch, args)
        _check(outcome, EXPECTED["wrong type"], f"wrong type: {args}")
        assert number in outcome.err
    # a required argument left out
    if any(p.required for p in command.params):
        _check(_vigil(capsys, monkeypatch, list(path)), {EXIT_USAGE}, f"nothing: {name}")
    # bad settings: a command that reads the settings fails on them (3, naming the
    # setting); one that does not read them fails as it does without them. Settings are
    # read in one place, so each command gets one of them (in turn, every setting meets
    # several commands) and a malformed configuration file.
    args = [*path, *_args(command, absent, out_dir, inputs=False)]
    baseline = _vigil(capsys, monkeypatch, args)
    config = world / "config.toml"
    config.write_text("[vigil\nfeed_urls = 3\n")
    turn = BAD_SETTINGS[COMMANDS.index((path, command)) % len(BAD_SETTINGS)]
    for variable, value, field in (turn, ("VIGIL_CONFIG", str(config), "config.toml")):
        outcome = _vigil(capsys, monkeypatch, args, {variable: value})
        shown = value.splitlines()[0] if value else value
        what = f"{variable}={shown!r}: {args}"
        if outcome.code == EXIT_CONFIG:
            _check(outcome, {EXIT_CONFIG}, what)
            assert field in outcome.err or variable in outcome.err, what
        else:
            assert outcome.code == baseline.code, (
                f"{what}: exit {outcome.code}, without the setting {baseline.code}\n{outcome.err}"
            )
            assert "Traceback" not in outcome.err, f"{what}:\n{outcome.err}"
            for fragment in PEM_FRAGMENTS:
                assert fragment not in outcome.err + outcome.out, f"{what}: key text echoed"


def test_the_sweep_reaches_every_command_group() -> None:
    """The walk finds the commands of every group main.py registers (not a fixed list)."""
    groups = {path[0] for path, _ in COMMANDS}
    registered = {info.name for info in app.registered_groups} | {
        info.name or (info.callback.__name__ if info.callback else "")
        for info in app.registered_commands
    }
    assert registered <= groups
    assert len(COMMANDS) > len(groups)


# --- the same failures as a user meets them: the console script in a real process -----

PEM_FILE_CASES = [
    (["feeds", "sync"], {"VIGIL_FEED_URLS": "not json"}, EXIT_CONFIG, "feed_urls"),
    (
        ["policy", "eval", "doc.json", "--no-log"],
        {"VIGIL_POLICY_ROOTS": "vigil,site"},
        EXIT_CONFIG,
        "policy_roots",
    ),
    (
        ["attest", "nonce", "hv-1"],
        {"VIGIL_ATTEST_REFERENCE_KEYS": "/x.pem"},
        EXIT_CONFIG,
        "attest_reference_keys",
    ),
    (
        ["bundle", "verify", "doc.json"],
        {"VIGIL_BUNDLE_VERIFICATION_KEY": PEM},
        EXIT_CONFIG,
        "bundle_verification_key",
    ),
    (["policy", "eval", "bad.json", "--no-log"], {}, EXIT_USAGE, "bad.json"),
    (["decide", "--host-id", "h", "--vcpus", "many"], {}, EXIT_USAGE, "--vcpus"),
]


def test_as_subprocesses(tmp_path: Path) -> None:
    import os

    (tmp_path / "doc.json").write_text("{}")
    (tmp_path / "bad.json").write_text("{not json")
    base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    base.update(
        PYTHONPATH=str(ROOT),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_CACHE_HOME=str(tmp_path),
    )
    runs = [
        (
            case,
            subprocess.Popen(
                [sys.executable, "-m", "engine.cli.main", *case[0]],
                cwd=tmp_path,
                env={**base, **case[1]},
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ),
        )
        for case in PEM_FILE_CASES
    ]
    for (args, _, code, named), proc in runs:
        out, err = proc.communicate(timeout=120)
        what = " ".join(args)
        _check(Outcome(proc.returncode, out, err), {code}, what)
        assert re.search(re.escape(named), err), f"{what}: {err}"
