"""Runtime settings, read from the environment (``DUNNING_`` prefix, ``__`` between levels).

Every field has an embedded default so that ``dunning run`` works on a machine with only Python:
no database URL means an embedded PostgreSQL server in the data folder, no Temporal address means
an embedded Temporal dev server, no provider credentials means the local outbox.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
POLICY_DIR = PACKAGE_DIR / "policies"
TEMPLATE_DIR = PACKAGE_DIR / "templates"


class DatabaseSettings(BaseModel):
    """PostgreSQL through SQLAlchemy 2 and psycopg 3."""

    url: SecretStr | None = Field(
        default=None,
        description="postgresql+psycopg:// URL; empty starts an embedded server in the data folder",
    )
    pool_size: int = Field(
        default=26, ge=1, description="connections kept; as many again may open under load"
    )
    echo: bool = False


class TemporalSettings(BaseModel):
    """Where workflows run: the embedded dev server, a cluster or Temporal Cloud."""

    address: str = Field(default="", description="host:port; empty starts the embedded dev server")
    namespace: str = "default"
    task_queue: str = "dunning"
    tls: bool = False
    tls_client_cert_path: Path | None = None
    tls_client_key_path: Path | None = None
    api_key: SecretStr | None = None
    dev_server_port: int = Field(default=7233, description="embedded server; a free one if taken")
    dev_server_ui_port: int = Field(
        default=8233, description="embedded web UI; a free one if taken"
    )
    max_concurrent_activities: int = Field(
        default=128,
        ge=1,
        description="activity slots; a send_step waits in its batch without holding a thread",
    )
    send_batch_size: int = Field(default=64, ge=1, description="most steps sent in one batch")
    send_batch_linger_ms: int = Field(
        default=10, ge=0, description="under load, how long a batch waits for more steps"
    )
    send_batch_lanes: int = Field(
        default=2, ge=1, description="batches in flight at once, each with a connection"
    )
    send_processes: int = Field(
        default=1,
        ge=0,
        description="child processes that run send batches, off the worker's interpreter lock;"
        " 0: in the worker's own threads",
    )
    provider_send_threads: int = Field(
        default=16, ge=1, description="provider requests (SendGrid, Twilio) a batch makes at once"
    )


class TwilioSettings(BaseModel):
    """SMS through Twilio; without credentials SMS go to the local outbox."""

    account_sid: str = ""
    auth_token: SecretStr | None = None
    messaging_service_sid: str = ""
    from_number: str = ""
    status_callback_url: str = ""
    base_url: str = Field(default="", description="API base override, for a local test server")

    @property
    def configured(self) -> bool:
        return bool(self.account_sid and self.auth_token)


class SendGridSettings(BaseModel):
    """Email through SendGrid; without an API key email goes to the local outbox."""

    api_key: SecretStr | None = None
    from_email: str = "billing@example.org"
    sandbox_mode: bool = False
    base_url: str = Field(default="", description="API host override, for a local test server")
    webhook_public_key: str = Field(
        default="", description="Event Webhook verification key (base64 ECDSA P-256 public key)"
    )
    inbound_parse_key: SecretStr | None = Field(
        default=None,
        description="Inbound Parse (email replies): the key= of the URL SendGrid posts to "
        "(SendGrid does not sign it); empty refuses inbound email",
    )

    @property
    def configured(self) -> bool:
        return self.api_key is not None


class ApiSettings(BaseModel):
    """The HTTP API served by ``dunning run`` and ``dunning api``."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, description="a free one if taken")
    public_url: str = Field(default="", description="URL providers call back, behind a proxy")
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="larger request bodies are refused (413)"
    )
    auth_failures: int = Field(
        default=10, ge=1, description="failed authentications per client before 429"
    )
    auth_window_seconds: int = Field(
        default=300, ge=1, description="the window those failures are counted in"
    )
    audit_refusal_window_seconds: int = Field(
        default=60, ge=0, description="one audit row per refused client or actor in this window"
    )
    unsubscribe_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key of the email unsubscribe links; empty keeps a random one in the "
        "data folder (set it when the worker and the API run on different machines)",
    )


def _weekday_office_hours() -> dict[str, str | list[str]]:
    return {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "17:00"}


class PracticeSettings(BaseModel):
    """Who the letters come from: the default of every policy's ``practice`` block.

    A policy's own ``practice`` fields win (a deployment serving several practices); what it
    leaves out is taken from here by the policy loader (``config.loader``).
    """

    name: str = "Riverside Family Medicine"
    phone: str = "(555) 010-0100"
    pay_url: str = "https://pay.example.org"
    remit_to: list[str] = Field(
        default_factory=lambda: ["PO Box 100", "Springfield, IL 62701"],
        description="street lines only: the practice name is printed above them",
    )
    return_address: list[str] = Field(default_factory=list, description="default: remit_to")
    phone_hours: dict[str, str | list[str]] = Field(
        default_factory=_weekday_office_hours,
        description="days (mon..sun), start and end (HH:MM) the billing phone is answered",
    )
    logo: str = ""
    tax_id: str = ""
    default_policy: str = "physician"
    policy_dirs: list[Path] = Field(
        default_factory=lambda: [POLICY_DIR],
        description="the folders a policy named in an import row is looked up in, in order",
    )

    def policy_file(self, name: str) -> Path | None:
        """``<folder>/<name>.yaml`` in the first policy folder that has it; a name, never a path."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            return None
        for folder in self.policy_dirs:
            path = folder / f"{name}.yaml"
            if path.is_file():
                return path
        return None

    def policy_defaults(self) -> dict[str, object]:
        """The fields a policy's ``practice`` block takes from here when it leaves them out."""
        return self.model_dump(exclude={"default_policy", "policy_dirs"})


class LedgerSettings(BaseModel):
    """Credits, reconciliation and the signal outbox."""

    refund_after_days: int = Field(
        default=30, ge=0, description="days an account stays in credit before a refund task opens"
    )
    reconcile_every_hours: int = Field(
        default=24, ge=1, description="the reconciliation schedule's interval"
    )
    reconcile_at_start: bool = Field(
        default=True, description="run the reconciliation once when a worker starts"
    )
    retention_days: int = Field(
        default=30,
        ge=1,
        description="delivered signal-outbox rows and applied webhook claims older than this are "
        "pruned by the daily reconciliation",
    )


class Settings(BaseSettings):
    """All settings of one deployment."""

    model_config = SettingsConfigDict(
        env_prefix="DUNNING_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Field(default=Path(".dunning"), description="embedded servers and the outbox")
    database: DatabaseSettings = DatabaseSettings()
    temporal: TemporalSettings = TemporalSettings()
    twilio: TwilioSettings = TwilioSettings()
    sendgrid: SendGridSettings = SendGridSettings()
    api: ApiSettings = ApiSettings()
    practice: PracticeSettings = PracticeSettings()
    ledger: LedgerSettings = LedgerSettings()

    @cached_property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @cached_property
    def runtime_file(self) -> Path:
        """Written by ``dunning run``: where its embedded servers listen, for the other commands."""
        return self.data_dir / "runtime.json"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, then apply explicit overrides."""
    return Settings(**overrides)  # type: ignore[arg-type]
