"""The one Kafka connection model (bootstrap, SSL, SASL) of every client: worker (faust /
aiokafka), learner, CLI and SDK (kafka-python), API (aiokafka). Read from ``STREAMREC_*``
variables; :class:`stream.config.Settings` extends it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaConnection(BaseSettings):
    """Where the brokers are and how to authenticate, as keyword arguments of each client library.

    >>> KafkaConnection(bootstrap="k1:9092,k2:9092").aiokafka_config()
    {'bootstrap_servers': ['k1:9092', 'k2:9092'], 'security_protocol': 'PLAINTEXT'}
    """

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", extra="ignore", hide_input_in_errors=True)

    bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]")
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="Kafka security protocol of every client (real clusters: SSL / SASL_SSL)"
    )
    sasl_mechanism: SaslMechanism = Field("PLAIN", description="SASL mechanism")
    sasl_username: str | None = Field(None, description="SASL user")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    ssl_cafile: str | None = Field(None, description="CA bundle to verify the brokers (PEM)")
    ssl_certfile: str | None = Field(None, description="client certificate for mutual TLS (PEM)")
    ssl_keyfile: str | None = Field(None, description="client key for mutual TLS (PEM)")
    ssl_keyfile_password: SecretStr | None = Field(None, description="password of the client key")

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaConnection:
        if self.security_protocol.startswith("SASL_") and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs STREAMREC_SASL_USERNAME and STREAMREC_SASL_PASSWORD"
            )
        return self

    def _ssl_context(self):
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        from aiokafka.helpers import create_ssl_context

        password = self.ssl_keyfile_password.get_secret_value() if self.ssl_keyfile_password else None
        return create_ssl_context(
            cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile, password=password
        )

    def aiokafka_config(self) -> dict:
        """Address and security keyword arguments of an aiokafka client.

        >>> cfg = KafkaConnection(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        ...                       sasl_username="api", sasl_password="s3cret").aiokafka_config()
        >>> cfg["sasl_mechanism"], cfg["sasl_plain_password"], type(cfg["ssl_context"]).__name__
        ('SCRAM-SHA-512', 's3cret', 'SSLContext')
        """
        config: dict = {"bootstrap_servers": self.bootstrap.split(","), "security_protocol": self.security_protocol}
        context = self._ssl_context()
        if context is not None:
            config["ssl_context"] = context
        if self.security_protocol.startswith("SASL_"):
            assert self.sasl_password is not None  # _sasl_needs_credentials: SASL_* has a password
            config.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value(),
            )
        return config

    def kafka_python_config(self) -> dict:
        """Address and security keyword arguments of a kafka-python client.

        >>> cfg = KafkaConnection(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
        ...                       sasl_username="svc", sasl_password="s3cret").kafka_python_config()
        >>> cfg["sasl_mechanism"], cfg["sasl_plain_username"], cfg["sasl_plain_password"]
        ('SCRAM-SHA-512', 'svc', 's3cret')
        """
        config: dict = {"bootstrap_servers": self.bootstrap.split(","), "security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            config.update(
                ssl_cafile=self.ssl_cafile,
                ssl_certfile=self.ssl_certfile,
                ssl_keyfile=self.ssl_keyfile,
                ssl_password=self.ssl_keyfile_password.get_secret_value() if self.ssl_keyfile_password else None,
            )
        if self.security_protocol.startswith("SASL_"):
            assert self.sasl_password is not None  # _sasl_needs_credentials: SASL_* has a password
            config.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value(),
            )
        return config

    def faust_credentials(self):
        """Faust's ``broker_credentials`` for this security set-up (None: plaintext)."""
        import faust

        if self.security_protocol.startswith("SASL_"):
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value(),
                mechanism=self.sasl_mechanism,
                ssl_context=self._ssl_context(),
            )
        if self.security_protocol == "SSL":
            return faust.SSLCredentials(self._ssl_context())
        return None
