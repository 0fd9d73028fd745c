"""`vigil provision` and `vigil tokens` against the running service (loopback): output,
--json, and the README's exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.keys import load_verification_key
from engine.provision import verify_report
from tests.api.conftest import Service
from tests.clirun import vigil


@pytest.fixture
def cli(service: Service, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Service:
    (tmp_path / "none.toml").write_text("")
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("VIGIL_SERVICE_URL", service.url)
    monkeypatch.setenv("VIGIL_SERVICE_TOKEN", service.world.tokens["acme"])
    monkeypatch.setenv("VIGIL_TOKENS_DB", str(service.world.folder / "tokens.sqlite3"))
    return service


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> Callable[..., tuple[int, str]]:
    def call(*args: str) -> tuple[int, str]:
        code, out, err = vigil(capsys, monkeypatch, *args)
        if code > 1:
            lines = err.strip().splitlines()
            assert lines[0].startswith("error: ") and "Traceback" not in err, err
        return code, out

    return call


def test_request_status_approve_report(cli: Service, tmp_path: Path,
                                       run: Callable[..., tuple[int, str]]) -> None:
    code, text = run("provision", "request", "--vm", "web-1", "--vcpus", "2",
                      "--host", "hv-admit", "--json")
    assert code == 0
    body = json.loads(text)
    rid = body["request_id"]
    assert body["status"] == "awaiting_approval"
    code, text = run("provision", "status", rid)
    assert code == 0 and "awaiting_approval" in text and "(ADMIT)" in text
    assert "advice: No vulnerabilities found" in text
    code, text = run("provision", "report", rid, "--out", str(tmp_path / "r.jws"),
                      "--html", str(tmp_path / "r.html"))
    assert code == 0 and text.startswith("ADMIT  No vulnerabilities found")
    report = verify_report((tmp_path / "r.jws").read_text(),
                           [load_verification_key(cli.world.report_public)])
    assert report.host == "hv-admit"
    assert "hv-admit" in (tmp_path / "r.html").read_text()
    code, text = run("provision", "approve", rid)
    assert code == 0 and "launched" in text
    code, text = run("provision", "approve", rid)  # again: launched once, same answer
    assert code == 0 and "launched" in text


def test_exit_codes(cli: Service, monkeypatch: pytest.MonkeyPatch,
                    run: Callable[..., tuple[int, str]]) -> None:
    code, text = run("provision", "request", "--vm", "db-1", "--host", "hv-reject")
    assert code == 1 and "REJECT" in text and "CVE-2099-0002" in text
    code, text = run("provision", "request", "--vm", "db-2", "--host", "hv-delay")
    assert code == 1 and "delayed" in text
    rid = text.split()[0]
    assert run("provision", "approve", rid)[0] == 2  # a delayed request awaits its re-check
    assert run("provision", "status", "00000000-0000-4000-8000-000000000000")[0] == 6
    assert run("provision", "request", "--vm", "x", "--image", "no-version")[0] == 2
    monkeypatch.setenv("VIGIL_SERVICE_TOKEN", "vgl_000000000000_" + "x" * 43)
    assert run("provision", "status", rid)[0] == 3
    monkeypatch.setenv("VIGIL_SERVICE_URL", "http://127.0.0.1:9")
    assert run("provision", "status", rid)[0] == 4


def test_tokens_create_list_revoke(cli: Service, run: Callable[..., tuple[int, str]]) -> None:
    code, text = run("tokens", "create", "initech-ci", "--role", "tenant", "--tenant",
                      "initech", "--json")
    assert code == 0
    made = json.loads(text)
    assert made["token"].startswith(f"vgl_{made['id']}_")
    code, text = run("tokens", "list", "--json")
    listed = {t["token_id"]: t for t in json.loads(text)}
    assert listed[made["id"]]["tenant"] == "initech"
    assert made["token"] not in text  # never shown again
    assert run("tokens", "create", "x", "--role", "tenant")[0] == 2  # no tenant named
    assert run("tokens", "revoke", made["id"])[0] == 0
    assert run("tokens", "revoke", "ffffffffffff")[0] == 6
