"""``vigil policy`` / ``bundle`` / ``decisions`` / ``schema``: Rego policies, signed OPA
bundles, the decision log and the input document's JSON Schema."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.cli import output
from engine.cli.common import JsonOption, LogOption
from engine.cli.decide import print_verdict
from engine.config import Settings, load_settings
from engine.errors import EXIT_CHECK, EXIT_INPUT, ConfigError, NotFoundError, UsageError, VigilError

if TYPE_CHECKING:
    from engine.decide import PolicySet

policy_app = typer.Typer(help="Test and evaluate Rego policies.", no_args_is_help=True)
bundle_app = typer.Typer(help="Build and verify signed OPA bundles.", no_args_is_help=True)
decisions_app = typer.Typer(help="Read, export and replay the decision log.",
                            no_args_is_help=True)
schema_app = typer.Typer(help="Print published JSON Schemas.", no_args_is_help=True)

EXIT_FINDING = 1


class CheckFailed(VigilError):
    """A check the command runs first did not pass (the README's exit code 1)."""

    exit_code = EXIT_CHECK


def _settings(**overrides: Any) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


# --- policy ---------------------------------------------------------------------------


@policy_app.command("test")
def policy_test(
    path: Annotated[Path, typer.Argument(help="Policy folder, root or file.")]
    = Path("engine/policies"),
    run: Annotated[str | None, typer.Option("--run", "-r", help="Only tests whose "
                                            "package.name matches this regex.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List passing tests too.")]
    = False,
    coverage: Annotated[bool, typer.Option(
        "--coverage", help="Report which lines of the policies the tests evaluated.")]
    = False,
    as_json: JsonOption = False,
) -> None:
    """Run the Rego tests (rules named test_* in *_test.rego files) like `opa test`.
    Exit code 1 when any test fails."""
    from engine.decide import (
        load_policy_tests,
        run_policy_tests,
        run_policy_tests_with_coverage,
        unwired_site_rules,
    )

    policy = load_policy_tests(path)
    covered = None
    if coverage:
        results, covered = run_policy_tests_with_coverage(policy, name_filter=run)
    else:
        results = run_policy_tests(policy, name_filter=run)
    failed = [r for r in results if not r.passed]
    loose = [u for u in unwired_site_rules(policy)
             if not policy.test_scope or u.startswith(policy.test_scope)]
    if as_json:
        report: dict[str, Any] = {
            "passed": len(results) - len(failed), "failed": len(failed),
            "unwired": loose,
            "tests": [{"package": r.package, "name": r.name, "file": r.file,
                       "status": r.status, "detail": r.detail, "output": r.output,
                       "duration_ns": r.duration_ns,
                       **({"explanation": dataclasses.asdict(r.explanation)}
                          if r.explanation else {})} for r in results]}
        if covered is not None:
            report["coverage"] = {
                "coverage": round(covered.percent, 2),
                "files": {path: {"covered_lines": len(f.covered),
                                 "not_covered_lines": len(f.not_covered),
                                 "not_covered": f.not_covered, "coverage": round(f.percent, 2)}
                          for path, f in sorted(covered.files.items())}}
        output.emit_json(report)
    else:
        for r in results:
            if r.passed and not verbose:
                continue
            line = f"data.{r.package}.{r.name}: {r.status.upper()} ({r.duration_ns / 1e6:.0f}ms)"
            output.stdout().print(line if r.passed else f"{r.file}:\n{line}  [{r.detail}]",
                                markup=False, highlight=False)
            if r.explanation is not None:
                for text in r.explanation.lines():
                    output.stdout().print(f"  {text}", markup=False, highlight=False,
                                          soft_wrap=True)
            if not r.passed and r.output.strip():
                for text in r.output.strip().splitlines():
                    output.stdout().print(f"  {text}", markup=False, highlight=False)
        for text in loose:
            output.stdout().print(f"{text}: NOT WIRED (data.site.findings does not read "
                                  "it, so the decision ignores it)", markup=False,
                                  highlight=False, soft_wrap=True)
        output.stdout().print("-" * 60)
        if covered is not None:
            for name, f in sorted(covered.files.items()):
                missing = (f"  not covered: lines {', '.join(map(str, f.not_covered))}"
                           if f.not_covered else "")
                output.stdout().print(f"coverage {f.percent:5.1f}%  {name}{missing}",
                                      markup=False, highlight=False, soft_wrap=True)
            output.stdout().print(f"coverage {covered.percent:5.1f}%  all policy modules",
                                  markup=False, highlight=False)
        output.stdout().print(f"{len(results) - len(failed)} passed, {len(failed)} failed"
                              + (f", {len(loose)} site rules not wired" if loose else ""),
                              markup=False, highlight=False)
    if failed or loose:
        raise typer.Exit(EXIT_FINDING)


@policy_app.command("eval")
def policy_eval(
    document: Annotated[Path, typer.Argument(help="Input document (JSON); - for stdin.")],
    policies: Annotated[Path | None, typer.Option(help="Policy folder (default: "
                                                  "VIGIL_POLICY_DIR).")] = None,
    bundle: Annotated[Path | None, typer.Option(help="Bundle to evaluate (default: "
                                                "VIGIL_BUNDLE).")] = None,
    log: LogOption = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not record the decision.")]
    = False,
    as_json: JsonOption = False,
) -> None:
    """Decide one placement from an input document and record it in the decision log.
    Exit code 1 unless the verdict is admit (as `vigil decide`)."""
    from engine.decide import Decider

    raw = sys.stdin.read() if str(document) == "-" else _read(document)
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{document}: not JSON: {exc}") from exc
    cfg = _settings(policy_dir=policies, bundle=bundle, decision_log=log)
    with Decider.from_settings(cfg, log=not no_log) as decider:
        verdict = decider.decide(value)
    print_verdict(verdict, as_json=as_json)
    if verdict.verdict != "admit":
        raise typer.Exit(EXIT_FINDING)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NotFoundError(f"cannot read {path}: {exc}") from exc


# --- bundle ---------------------------------------------------------------------------


def _bundle_config(config: Path) -> dict[str, Any]:
    if not config.is_file():
        raise NotFoundError(f"no bundle configuration {config}",
                            tip="pass --config bundles/vigil.toml (paths in it are relative "
                                "to the file)")
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8")).get("bundle", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read bundle configuration {config}: {exc}") from exc
    return dict(data)


@bundle_app.command("build")
def bundle_build(
    config: Annotated[Path, typer.Option(help="Build configuration (TOML).")]
    = Path("bundles/vigil.toml"),
    root: Annotated[list[str] | None, typer.Option("--root", help="Bundle root (repeat); "
                                                   "overrides the configuration.")] = None,
    revision: Annotated[str | None, typer.Option(help="Revision (default: content hash).")]
    = None,
    signing_key: Annotated[Path | None, typer.Option(help="PEM private key (RSA: RS256, "
                                                     "P-256: ES256).")] = None,
    key_id: Annotated[str | None, typer.Option(help="Key id (kid) in the signature.")] = None,
    scope: Annotated[str | None, typer.Option(help="Signature scope claim.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output .tar.gz.")] = None,
    skip_tests: Annotated[bool, typer.Option(
        "--skip-tests", help="Build even though the policy tests fail or are not run "
                             "(recorded in the manifest: metadata.vigil.tests).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Build an OPA bundle (.manifest, data.json, policies; tests left out) and sign it.
    The policy tests of its roots run first: a failing test, or a site rule not wired
    into the decision, refuses the build (exit 1) unless --skip-tests."""
    from engine.decide import build_bundle, load_directory

    cfg = _bundle_config(config)
    base = config.parent
    policies = (base / cfg.get("policies", "../engine/policies")).resolve()
    roots = root or cfg.get("roots", ["vigil"])
    policy = load_directory(policies, roots)
    _compiles(policy)
    tests = {"status": "skipped"} if skip_tests else _tests_pass(policies, roots)
    target = out or (base / cfg.get("output", "vigil.tar.gz"))
    raw = build_bundle(policy, revision=revision, signing_key=signing_key,
                       key_id=key_id or cfg.get("key_id", "vigil"), scope=scope,
                       metadata={"vigil": {"tests": tests}})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(raw)
    info = {"bundle": str(target), "revision": revision or policy.revision,
            "roots": list(policy.roots), "files": len(policy.policy_modules)
            + len(policy.data_files) + 1, "signed": signing_key is not None,
            "tests": tests}
    if as_json:
        output.emit_json(info)
    else:
        output.stdout().print(f"wrote {target} (revision {info['revision']}, roots "
                            f"{', '.join(policy.roots)}, "
                            f"{'signed' if signing_key else 'UNSIGNED'}, "
                            f"{_tests_text(tests)})", markup=False)


def _tests_pass(policies: Path, roots: list[str]) -> dict[str, Any]:
    """Run the policy tests of ``roots`` (as `vigil policy test` does) and check the
    site rules' wiring; raise when any fails, else say how many passed."""
    from engine.decide import load_policy_tests_of_roots, run_policy_tests, unwired_site_rules

    policy = load_policy_tests_of_roots(policies, roots)
    results = run_policy_tests(policy)
    failed = [r for r in results if not r.passed]
    loose = [u for u in unwired_site_rules(policy) if u.startswith(policy.test_scope)]
    if failed or loose:
        named = [f"data.{r.package}.{r.name}" for r in failed[:3]] + loose[:3]
        raise CheckFailed(
            f"not built: {len(failed)} policy tests fail and {len(loose)} site rules are "
            f"not wired into the decision ({'; '.join(named)})",
            tip="run `vigil policy test` to see why; --skip-tests builds anyway (the "
                "manifest records it)")
    return {"status": "passed", "passed": len(results)}


def _tests_text(tests: dict[str, Any]) -> str:
    if tests.get("status") == "passed":
        return f"{tests.get('passed')} policy tests passed"
    return f"policy tests {tests.get('status', 'not recorded')}"


@bundle_app.command("serve")
def bundle_serve(
    folder: Annotated[Path, typer.Option(help="Folder of built bundles (*.tar.gz).")]
    = Path("bundles"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8182,
    accept_decision_logs: Annotated[bool, typer.Option(
        "--accept-decision-logs",
        help="Take OPA's decision logs (POST /logs) into the decision log "
             "(VIGIL_DECISION_LOG).")] = False,
) -> None:
    """Serve built bundles to OPA servers: GET /bundles/NAME.tar.gz with ETag, answering
    304 while the bundle is unchanged. With VIGIL_BUNDLE_VERIFICATION_KEY set, only
    bundles whose signature verifies are served. With --accept-decision-logs, the OPA
    servers' decision logs land in Vigil's hash-chained log, with the bundles served."""
    import contextlib
    import socket

    import uvicorn

    from engine.decide import BundleFolder, DecisionLog, bundle_server_app

    class AnnouncingServer(uvicorn.Server):
        """Says where it serves once it listens (the line is the server's readiness
        signal, and names the port the system chose for --port 0)."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                bound = self.servers[0].sockets[0].getsockname()[1]
                output.stderr().print(
                    f"serving {served.folder}/*.tar.gz at http://{host}:{bound}/bundles/"
                    + (f"; decision logs at /logs into {cfg.decision_log}" if log else ""),
                    markup=False)

    if not folder.is_dir():
        raise NotFoundError(f"no bundle folder {folder}",
                            tip="build one with `vigil bundle build` (writes to bundles/)")
    cfg = load_settings()
    served = BundleFolder(folder, verification_key=cfg.bundle_verification_key,
                          key_id=cfg.bundle_verification_key_id,
                          scope=cfg.bundle_verification_scope)
    log = DecisionLog(cfg.decision_log) if accept_decision_logs else None
    server = AnnouncingServer(uvicorn.Config(bundle_server_app(served, log), host=host,
                                             port=port, log_level="warning"))
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn re-raises it once stopped
            server.run()
    finally:
        if log is not None:
            log.close()
    if not server.started:
        raise typer.Exit(3)  # uvicorn's exit code when it cannot start


def _compiles(policy: PolicySet) -> None:
    """Refuse a policy that either in-process evaluator cannot load, naming the file and
    line: regorus parses it, rego-cpp also compiles it (it checks, for example, that
    every function called exists)."""
    from engine.decide import EMBEDDED, embedded_evaluator

    for name in EMBEDDED:
        embedded_evaluator(name, policy, timeout=None).close()


@bundle_app.command("verify")
def bundle_verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle .tar.gz")],
    key: Annotated[Path | None, typer.Option(help="PEM public key (default: "
                                             "VIGIL_BUNDLE_VERIFICATION_KEY).")] = None,
    key_id: Annotated[str | None, typer.Option(help="Expected key id.")] = None,
    scope: Annotated[str | None, typer.Option(help="Expected scope.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a bundle the way OPA would: signature, key id, scope, every file's hash,
    manifest roots, and that its policies compile. Exit code 4 when it does not verify."""
    from engine.decide import read_bundle

    cfg = load_settings()
    key = key or cfg.bundle_verification_key
    if key is None:
        raise UsageError("no verification key: pass --key or set "
                         "VIGIL_BUNDLE_VERIFICATION_KEY")
    policy = read_bundle(bundle, verification_key=key,
                         key_id=key_id or cfg.bundle_verification_key_id,
                         scope=scope or cfg.bundle_verification_scope)
    _compiles(policy)
    files = sorted([*policy.modules, *policy.data_files, ".manifest"])
    tests = policy.metadata.get("vigil", {}).get("tests", {}) \
        if isinstance(policy.metadata.get("vigil"), dict) else {}
    info = {"bundle": str(bundle), "verified": True, "revision": policy.revision,
            "roots": list(policy.roots), "key_id": policy.signed_by, "files": files,
            "tests": tests}
    if as_json:
        output.emit_json(info)
    else:
        output.stdout().print(f"{bundle}: verified (revision {policy.revision}, key "
                            f"{policy.signed_by}, {len(files)} files, "
                            f"{_tests_text(tests)} at build)", markup=False)


# --- decisions ------------------------------------------------------------------------


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"--since {value!r} is not an ISO date or time") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@decisions_app.command("list")
def decisions_list(since: Annotated[str | None, typer.Option(help="ISO date/time.")] = None,
                   log: LogOption = None, as_json: JsonOption = False) -> None:
    """List recorded decisions."""
    from engine.decide import DecisionLog

    cfg = _settings(decision_log=log)
    with DecisionLog(cfg.decision_log) as dlog:
        records = dlog.since(_since(since))
    if as_json:
        output.emit_json([{"decision_id": r.decision_id, "timestamp": r.timestamp,
                           "verdict": r.result.get("verdict", "posture"),
                           "host": r.input.get("host", {}).get("id"),
                           "tenant": r.input.get("request", {}).get("tenant"),
                           "bundle_revision": r.bundle_revision, "evaluator": r.evaluator}
                          for r in records])
        return
    output.table(f"Decisions in {cfg.decision_log}",
                 ["decision", "time", "verdict", "host", "tenant", "revision"],
                 [(r.decision_id, r.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
                   r.result.get("verdict", "posture"), r.input.get("host", {}).get("id"),
                   r.input.get("request", {}).get("tenant", ""), r.bundle_revision)
                  for r in records])


@decisions_app.command("export")
def decisions_export(since: Annotated[str | None, typer.Option(help="ISO date/time.")] = None,
                     log: LogOption = None) -> None:
    """Write the decisions as NDJSON OPA decision-log events on stdout."""
    from engine.decide import DecisionLog

    cfg = _settings(decision_log=log)
    with DecisionLog.from_settings(cfg, shared=True) as dlog:  # signs an export checkpoint
        dlog.export_ndjson(sys.stdout.buffer, _since(since))
    sys.stdout.flush()


@decisions_app.command("replay")
def decisions_replay(
    decision_id: Annotated[str | None, typer.Argument(help="Decision id.")] = None,
    since: Annotated[str | None, typer.Option(help="Replay every decision since this ISO "
                                              "date/time.")] = None,
    bundle: Annotated[Path | None, typer.Option(help="Evaluate with this bundle instead of "
                                                "the recorded revision.")] = None,
    policies: Annotated[Path | None, typer.Option(help="Evaluate with this policy folder "
                                                  "(roots from VIGIL_POLICY_ROOTS).")] = None,
    log: LogOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-evaluate recorded decisions with their recorded input and bundle revision and
    report divergences. Exit code 1 when any decision diverges."""
    from engine.decide import DecisionLog, Replayer, load_directory, read_bundle

    if (decision_id is None) == (since is None):
        raise UsageError("give either a decision id or --since DATE")
    cfg = _settings(decision_log=log)
    from engine.cli.audit import refuse_broken
    refuse_broken(cfg)  # a log whose chain does not verify is not replayed
    override = None
    if bundle is not None:
        override = read_bundle(bundle, verification_key=cfg.bundle_verification_key,
                               key_id=cfg.bundle_verification_key_id,
                               scope=cfg.bundle_verification_scope)
    elif policies is not None:
        override = load_directory(policies, cfg.policy_roots)
    with DecisionLog(cfg.decision_log) as dlog:
        if decision_id is not None:
            record = dlog.get(decision_id)
            if record is None:
                raise NotFoundError(f"decision {decision_id} is not in {cfg.decision_log}")
            records = [record]
        else:
            records = dlog.since(_since(since))
        replayer = Replayer(dlog, override)
        try:
            results = [replayer.replay(r) for r in records]
        finally:
            replayer.close()
    diverged = [r for r in results if r.diverged]
    if as_json:
        output.emit_json({"replayed": len(results), "diverged": len(diverged),
                          "decisions": [{**r.__dict__, "diverged": r.diverged}
                                        for r in results]})
    else:
        for r in results:
            state = "DIVERGED" if r.diverged else "same"
            output.stdout().print(f"{r.decision_id}: {state} (recorded {r.recorded_verdict} "
                                f"@ {r.recorded_revision}, replayed {r.replayed_verdict} @ "
                                f"{r.replayed_revision})", markup=False, highlight=False)
            for difference in r.differences:
                output.stdout().print(f"  {difference}", markup=False, highlight=False)
        output.stdout().print(f"{len(results)} replayed, {len(diverged)} diverged", markup=False)
    if diverged:
        raise typer.Exit(EXIT_FINDING)


# --- schema ---------------------------------------------------------------------------


@schema_app.command("input")
def schema_input(out: Annotated[Path | None, typer.Option(help="Write to this file.")]
                 = None) -> None:
    """Print the JSON Schema of the input document (schema version 1)."""
    from engine.decide import json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if out is not None:
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


__all__ = ["EXIT_INPUT", "bundle_app", "decisions_app", "policy_app", "schema_app"]
