"""Configuration: environment over file over defaults, and errors that name the setting."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from engine.config import load_settings
from engine.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("VIGIL_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


def test_defaults_live_in_the_user_data_folder(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.db == tmp_path / "xdg-data" / "vigil" / "pvdb.duckdb"
    assert settings.offline is False
    assert settings.ingest_batch == 2000


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "vigil.toml"
    config.write_text('db = "/srv/vigil/pvdb.duckdb"\ningest_batch = 500\n'
                      '[feed_urls]\nkev = "https://example.org/kev.json"\n')
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    settings = load_settings()
    assert settings.db == Path("/srv/vigil/pvdb.duckdb")
    assert settings.feed_urls == {"kev": "https://example.org/kev.json"}
    monkeypatch.setenv("VIGIL_INGEST_BATCH", "7")
    assert load_settings().ingest_batch == 7, "the environment wins over the file"


def test_default_config_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "xdg-config" / "vigil" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("offline = true\n")
    assert load_settings().offline is True


@pytest.mark.parametrize(
    ("content", "message"),
    [("db = [", "cannot read configuration file"),
     ("ingest_batch = 0", "ingest_batch"),
     ("colour = 'blue'", "colour")],
)
def test_bad_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str,
                           message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", "/nonexistent/vigil.toml")
    with pytest.raises(ConfigError, match=re.escape("/nonexistent/vigil.toml")):
        load_settings()


def test_a_setting_that_is_not_json_is_a_configuration_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_FEED_URLS", "not json")
    with pytest.raises(ConfigError, match="feed_urls") as caught:
        load_settings()
    assert caught.value.exit_code == 3


def test_key_text_in_a_key_setting_is_refused_and_never_repeated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-secret-body\n"
              "-----END PRIVATE KEY-----\n")
    for name in ("VIGIL_BUNDLE_VERIFICATION_KEY", "VIGIL_ATTEST_RESULT_KEY",
                 "VIGIL_REPORT_SIGNING_KEY"):
        monkeypatch.setenv(name, secret)
        with pytest.raises(ConfigError) as caught:
            load_settings()
        text = f"{caught.value.summary} {caught.value.tip}"
        assert name.removeprefix("VIGIL_").lower() in text
        assert "secret-body" not in text and "BEGIN" not in text
        monkeypatch.delenv(name)


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0", "1e9"])
def test_a_timeout_must_be_a_finite_positive_number(monkeypatch: pytest.MonkeyPatch,
                                                    value: str) -> None:
    """VIGIL_DECISION_TIMEOUT=inf once reached select() and raised OverflowError."""
    monkeypatch.setenv("VIGIL_DECISION_TIMEOUT", value)
    with pytest.raises(ConfigError, match="decision_timeout"):
        load_settings()
