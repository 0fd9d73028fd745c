"""Configuration: a TOML file plus ``VIGIL_*`` environment variables.

Precedence, highest first: environment variables, the file named by ``VIGIL_CONFIG``
(or ``~/.config/vigil/config.toml`` when it exists), built-in defaults.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from engine.errors import ConfigError


def _default_db() -> Path:
    return Path(platformdirs.user_data_dir("vigil")) / "pvdb.duckdb"


def _default_decision_log() -> Path:
    return Path(platformdirs.user_data_dir("vigil")) / "decisions.duckdb"


def _default_cache() -> Path:
    return Path(platformdirs.user_cache_dir("vigil")) / "http"


class Settings(BaseSettings):
    """Vigil's settings. Every field can be set as ``VIGIL_<FIELD>`` or in the TOML file."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="forbid", frozen=True)

    @field_validator("images_signing_key", "bundle_verification_key", "attest_result_key",
                     "attest_result_verification_key", "report_signing_key",
                     "report_verification_key", "attest_reference_keys",
                     "audit_signing_key", "audit_verification_keys", mode="before")
    @classmethod
    def _a_path_not_key_text(cls, value: Any) -> Any:
        """Key settings name files. Key text pasted in their place is refused without
        being repeated anywhere (a private key must not reach a terminal or a log)."""
        for item in value if isinstance(value, (list, tuple)) else [value]:
            text = str(item) if item is not None else ""
            if "-----BEGIN" in text or "\n" in text:
                raise ValueError("this looks like key material, not the path of a key file "
                                 "(the value is not shown); give the file's path")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _a_path_is_not_empty(cls, value: Any, info: ValidationInfo) -> Any:
        """An empty path (``VIGIL_DB=''``) would mean the working folder: refused."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and "Path" in str(field.annotation):
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(item, str) and not item.strip():
                    raise ValueError("an empty path; give a file's path or leave it unset")
        return value

    db: Path = Field(default_factory=_default_db)
    """Path of the PVDB DuckDB file."""

    http_cache: Path = Field(default_factory=_default_cache)
    """Folder where HTTP validators (ETag, Last-Modified) and bodies of synced feeds are kept."""

    http_timeout: float = Field(default=60.0, gt=0, le=3600, allow_inf_nan=False)
    """Seconds before an HTTP feed download is abandoned."""

    offline: bool = False
    """Never touch the network: ``feeds sync`` and URL sources fail instead of downloading."""

    feed_urls: dict[str, str] = Field(default_factory=dict)
    """Named feed URLs that ``vigil feeds sync`` pulls (name -> URL)."""

    ingest_batch: int = Field(default=2000, ge=1)
    """Records written per transaction during ingest; a crash loses at most one batch."""

    ingest_max_document: int = Field(default=512 * 1024**2, ge=1)
    """Bytes of the largest document read (a file, an archive member or an HTTP body,
    after decompression); a larger one is refused as a problem, and nothing beyond the
    limit is decompressed."""

    ingest_max_source: int = Field(default=8 * 1024**3, ge=1)
    """Bytes read from one file or URL in all (every member of an archive together, after
    decompression; the downloaded body of a URL); what is beyond is refused as a problem."""

    calendars: Path | None = None
    """Folder of operator release calendars (``*.ics``): they add to the built-in ones in
    ``feeds/calendars`` and replace any with the same ``UID``."""

    predict_db: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("vigil")) / "predict.duckdb")
    """DuckDB file of the preparation queue and the log of missed predictions (not the
    PVDB)."""

    predict_window_days: int = Field(default=30, ge=0)
    """Decision window of the patch-availability predictor: every estimate states
    P(fix within this many days)."""

    fleet_db: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("vigil")) / "fleet.duckdb")
    """DuckDB file of the fleet inventory: hosts, VMs, anti-affinity groups."""

    rollout_db: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("vigil")) / "rollouts.duckdb")
    """DuckDB file of the rollouts' durable state (rollouts and their steps); traces and
    control requests are written beside it."""

    images_db: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("vigil")) / "images.duckdb")
    """DuckDB file of the image catalog: host image versions, their change history and
    each host group's target version (not the PVDB)."""

    images_signing_key: Path | None = None
    """PEM private key with which the image builder signs the reference manifests of the
    versions it makes (its public key belongs in ``attest_reference_keys``)."""

    patch_catalogue: Path | None = None
    """The operator's patch catalogue (YAML or JSON): what feeds do not say about
    patches (requirements, conflicts, reboot or live patch, patches of their own)."""

    policy_dir: Path | None = None
    """Folder of Rego policies the embedded evaluator loads when no ``bundle`` is set
    (default: ``engine/policies/``, installed with the package)."""

    policy_roots: list[str] = Field(default_factory=lambda: ["vigil"])
    """Bundle roots loaded from ``policy_dir`` (add ``site`` for an administrator's rules)."""

    bundle: Path | None = None
    """OPA bundle (``.tar.gz``) the embedded evaluator loads instead of ``policy_dir``."""

    bundle_verification_key: Path | None = None
    """PEM public key: when set, only bundles whose signature verifies with it are loaded."""

    bundle_verification_key_id: str | None = None
    """Key id the bundle's signature must name (default: the one in the signature)."""

    bundle_verification_scope: str | None = None
    """Scope the bundle's signature must carry (OPA's ``scope``)."""

    evaluator: Literal["regorus", "regopy", "opa"] = "regorus"
    """Embedded Rego evaluator: ``regorus`` (Rust, in a worker process; the default,
    linear in the number of vulnerabilities), ``regopy`` (rego-cpp, in-process;
    quadratic, slower above a few vulnerabilities) or ``opa`` (OPA's own Go engine,
    in-process through the library ``scripts/setup.sh`` builds). Ignored when ``opa_url``
    is set."""

    opa_url: str | None = None
    """Base URL of an OPA server (``http://127.0.0.1:8181``); when set, decisions are
    evaluated there instead of in-process."""

    decision_timeout: float = Field(default=1.0, gt=0, le=3600, allow_inf_nan=False)
    """Seconds an evaluation may take before the decision is a reject (fail closed)."""

    decision_memory_limit: int = Field(default=2 * 1024**3, ge=256 * 1024**2)
    """Bytes of address space the regorus evaluator's worker process may use; an
    evaluation that needs more ends it and is a reject (fail closed). rego-cpp and OPA
    run in this process and are not capped."""

    decision_log: Path = Field(default_factory=_default_decision_log)
    """DuckDB file of the append-only decision log."""

    attest_db: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("vigil")) / "attest.sqlite3")
    """SQLite file of the verifier's attestation state: issued nonces, per-host TPM
    counters, trusted attestation keys and pending AK enrollments (not the PVDB)."""

    attest_nonce_ttl: float = Field(default=300.0, gt=0)
    """Seconds an issued nonce stays valid; a quote over an older nonce is rejected."""

    attest_verifier_id: str = "vigil"
    """The verifier's developer id in attestation results (``ear.verifier-id``)."""

    attest_result_key: Path | None = None
    """PEM private key (EC P-256/P-384, Ed25519 or RSA) that signs attestation results."""

    attest_result_verification_key: Path | None = None
    """The verifier's PEM public key: ``vigil decide`` trusts only results it verifies."""

    report_signing_key: Path | None = None
    """PEM private key that signs tenant attestation reports. Its own key, never the
    verifier's: reports are issued by the provisioning side, and a key that could sign
    both would let whoever holds it forge attestation results too."""

    report_verification_key: Path | None = None
    """PEM public key of the report signer: ``vigil report verify`` checks reports with it."""

    attest_references: Path | None = None
    """Folder of signed reference manifests (``*.jws``) of the approved host images."""

    attest_reference_keys: list[Path] = Field(default_factory=list)
    """PEM public keys of the image pipelines whose reference manifests are trusted."""

    attest_ek_ca: list[Path] = Field(default_factory=list)
    """PEM files of the TPM manufacturers' EK CA certificates (trust anchors)."""

    attest_ak_ca: list[Path] = Field(default_factory=list)
    """PEM files of the provider CA certificates that issue AK certificates."""

    attest_unsafe_trust_ek_without_certificate: bool = False
    """Bind AKs to an EK that has no certificate chaining to ``attest_ek_ca``. Unsafe:
    nothing then proves the EK belongs to a genuine TPM (labs only)."""

    tcti: str = "device:/dev/tpmrm0"
    """TPM Command Transmission Interface for the host agent, as ``name:config``
    (``device:/dev/tpmrm0``, ``swtpm:host=127.0.0.1,port=2321``, ``mssim:…``)."""

    attest_eventlog: Path = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
    """The host's measured-boot event log, as the kernel exposes it."""

    attest_ak_handle: int = Field(default=0x81018000, ge=0x81000000, le=0x81FFFFFF)
    """Persistent TPM handle of the host agent's attestation key."""

    attest_results: Path | None = None
    """Folder of hosts' latest signed attestation results (``<host id>.jwt``, EAR JWTs)
    that the service (``vigil serve``) places on; each is verified with
    ``attest_result_verification_key`` before it is used."""

    attest_result_ttl: float = Field(default=900.0, gt=0, allow_inf_nan=False)
    """Seconds a verified attestation result is used for placements after it was issued;
    an older one counts as missing (the placement is rejected, naming why)."""

    admission_timeout: float = Field(default=5.0, gt=0, le=3600, allow_inf_nan=False)
    """Seconds the service gives one placement decision for a Kubernetes admission
    review (the API server's webhook timeout is 10 s); past it the answer is a reject."""

    service_max_body: int = Field(default=4 * 1024**2, ge=1024)
    """Bytes of the largest request body the service reads; a larger one gets 413."""

    requests_db: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("vigil")) / "requests.duckdb")
    """DuckDB file of the service's provisioning requests: their states, approvals,
    launches and scheduled re-checks (survives restarts)."""

    tokens_db: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("vigil")) / "tokens.sqlite3")
    """SQLite file of the service's API tokens (stored hashed, with their role and
    tenant); ``vigil tokens create`` writes it while the service runs."""

    request_approval_ttl: float = Field(default=3600.0, gt=0, allow_inf_nan=False)
    """Seconds a provisioning request awaits its approval; it expires after."""

    attest_source: Literal["cached", "agent", "cached-then-agent"] = "cached-then-agent"
    """Where the provisioning flow gets a host's fresh attestation result: the cached
    verified result younger than ``attest_result_ttl``, a challenge to the host's agent
    with a new nonce, or the first when there is one and the second otherwise."""

    attest_agent_timeout: float = Field(default=2.0, gt=0, le=60, allow_inf_nan=False)
    """Seconds a host's agent has to answer a challenge; past it the host counts as not
    attested (the request is rejected naming the step), never a hang."""

    attest_agent_token_file: Path | None = None
    """File holding the bearer token the hosts' agents ask of a challenge (``vigil agent
    serve --token-file``); the provisioning flow sends it. Never printed."""

    attest_agent_ca: Path | None = None
    """PEM CA certificates that vouch for the agents' TLS certificates (default: the
    system's), for agents served over HTTPS."""

    service_url: str = "http://127.0.0.1:8443"
    """Where ``vigil provision`` finds the running service."""

    service_token: SecretStr | None = None
    """The API token ``vigil provision`` sends (``VIGIL_SERVICE_TOKEN``); never printed."""
    decision_log_wait: float = Field(default=30.0, ge=0, le=3600, allow_inf_nan=False)
    """Seconds a command waits for the decision log while another process holds it (a
    DuckDB file has one writer at a time); past it the command fails (exit 5)."""

    audit_signing_key: Path | None = None
    """PEM private key that signs the decision log's checkpoints (sequence number, head
    hash, time): written every ``audit_checkpoint_every`` records and at every export."""

    audit_verification_keys: list[Path] = Field(default_factory=list)
    """PEM public keys checkpoints are verified with: the current key and every retired
    one (a checkpoint names its key id). Default: the public half of
    ``audit_signing_key``."""

    audit_checkpoint_every: int = Field(default=1000, ge=1)
    """Records between two signed checkpoints of the decision log."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_path()
        if path is None:
            return {}
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"cannot read configuration file {path}: {exc}",
                tip="fix the file or point VIGIL_CONFIG at another one",
            ) from exc


def config_path() -> Path | None:
    """The configuration file in use, or None when there is none."""
    explicit = os.environ.get("VIGIL_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"VIGIL_CONFIG names {path}, which is not a file")
        return path
    default = Path(platformdirs.user_config_dir("vigil")) / "config.toml"
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Load the settings; raise :class:`ConfigError` naming the bad field."""
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        # a value that is not JSON where the setting takes a list or a table
        # (VIGIL_FEED_URLS='not json'); the message names the field, never the value
        raise ConfigError(
            f"invalid configuration: {exc}",
            tip="settings that take a list or a table are JSON in the environment, e.g. "
                "VIGIL_FEED_URLS='{\"kev\": \"https://…\"}' or VIGIL_POLICY_ROOTS='[\"vigil\"]'",
        ) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid configuration: {problems}",
            tip="check the VIGIL_* environment variables and the configuration file",
        ) from exc
