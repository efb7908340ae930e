"""How every fashionrag program reads its typed settings: flags first, then FASHIONRAG_* variables;
and the settings every service shares, defined once."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from fashionrag.grpc_options import DEFAULT_MAX_CONNECTION_AGE_SECONDS
from fashionrag.grpc_security import ClientSecurity, ServerSecurity


def settings_config(prog: str) -> SettingsConfigDict:
    """The pydantic-settings configuration shared by every settings class.

    `--max-batch-size` or FASHIONRAG_MAX_BATCH_SIZE; boolean settings are plain switches
    (`--recreate`, `--no-recreate`).
    """
    return SettingsConfigDict(
        env_prefix="FASHIONRAG_",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name=prog,
        extra="ignore",
    )


class LoggingSettings(BaseSettings):
    """How a program logs (every service and job has these)."""

    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: Literal["text", "json"] = Field("text", description="text or json lines")


class ServerSettings(LoggingSettings):
    """What every gRPC server has besides its logging: where it listens, its metrics, how long
    a caller's connection lives."""

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: all interfaces)")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus metrics port on --host (0: no metrics)"
    )
    max_connection_age_seconds: float = Field(
        DEFAULT_MAX_CONNECTION_AGE_SECONDS,
        ge=0,
        description="close each caller's connection after about this long, letting calls in "
        "flight finish within --grace-seconds, so callers resolve DNS names again and find new "
        "replicas (0: never)",
    )
    tls_cert: str = Field(
        "",
        description="PEM certificate chain to serve gRPC with TLS, with --tls-key (empty: "
        "plaintext)",
    )
    tls_key: str = Field("", description="PEM private key of --tls-cert")
    tls_client_ca: str = Field(
        "",
        description="PEM CA bundle: callers must present a certificate it signed (mutual TLS)",
    )
    auth_token: SecretStr = Field(
        SecretStr(""),
        description="bearer token every call must carry (gRPC metadata and HTTP "
        "`authorization: Bearer <token>`), health and reflection excepted (empty: none)",
    )

    def server_security(self) -> ServerSecurity:
        """The server's doors (TLS, mutual TLS, token) as these settings say.

        Raises:
            ConfigurationError: a certificate without its key, or a client CA without TLS.
        """
        return ServerSecurity(
            self.tls_cert, self.tls_key, self.tls_client_ca, self.auth_token.get_secret_value()
        )


class EmbedderCallerSettings(BaseSettings):
    """How a service that calls the embedder (the query service, the indexer) passes its doors."""

    embedder_tls_ca: str = Field(
        "", description="PEM CA that signed the embedder's certificate: call it with TLS"
    )
    embedder_tls_cert: str = Field(
        "", description="PEM client certificate to present to the embedder (mutual TLS)"
    )
    embedder_tls_key: str = Field("", description="PEM private key of --embedder-tls-cert")
    embedder_token: SecretStr = Field(
        SecretStr(""), description="bearer token to send to the embedder (empty: none)"
    )

    def embedder_security(self) -> ClientSecurity:
        """The embedder client's side of the doors.

        Raises:
            ConfigurationError: a certificate without its key, or without a CA.
        """
        return ClientSecurity(
            self.embedder_tls_ca,
            self.embedder_tls_cert,
            self.embedder_tls_key,
            self.embedder_token.get_secret_value(),
        )


class CallerSettings(BaseSettings):
    """How a command that calls a fashionrag service (search, eval) passes its doors."""

    tls_ca: str = Field("", description="PEM CA that signed the server's certificate: use TLS")
    tls_cert: str = Field("", description="PEM client certificate to present (mutual TLS)")
    tls_key: str = Field("", description="PEM private key of --tls-cert")
    token: SecretStr = Field(SecretStr(""), description="bearer token to send (empty: none)")

    def client_security(self) -> ClientSecurity:
        """The client's side of the doors.

        Raises:
            ConfigurationError: a certificate without its key, or without a CA.
        """
        return ClientSecurity(
            self.tls_ca, self.tls_cert, self.tls_key, self.token.get_secret_value()
        )
