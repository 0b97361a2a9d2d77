"""Settings shared by every service.

Each service has exactly one settings class, a subclass of `BaseServiceSettings`. Values come,
highest first, from constructor arguments (the CLI's flags), `MESH_*` environment variables, an
optional TOML file named by `MESH_CONFIG`, then defaults. `to_env()` turns a settings object back
into the environment that reproduces it, which is how the CLI configures the services it starts:
one list of option names, the fields themselves.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .access import check_exposure
from .errors import InvalidRequest
from .invite import decode_token
from .pki import Credentials

ENV_PREFIX = "MESH_"
NESTED_DELIMITER = "__"


class BaseServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        frozen=True,
        extra="forbid",
    )

    join: SecretStr = Field(
        SecretStr(""),
        description="invite token: the mesh id and etcd endpoints are taken from it; "
        "settings given explicitly (and not empty) win over the token's",
    )
    mesh_id: str = Field("default", description="name of the mesh; every key lives under it")
    node: str = Field(default_factory=socket.gethostname, description="this machine's node id")
    etcd_endpoints: str = Field("127.0.0.1:2379", description="comma-separated host:port list")
    tls_dir: str = Field(
        "",
        description="this node's credentials (ca.crt, node.crt, node.key): mutual TLS for "
        "etcd, gRPC and the worker relay; without them those listen on loopback only",
    )
    etcd_tls: bool = Field(
        True, description="reach etcd with the node's certificate (when tls_dir is given)"
    )
    probe_host: str = Field(
        "127.0.0.1", description="address of the probe and metrics port (http_port)"
    )
    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"
    bind_host: str = Field("127.0.0.1", description="address this service listens on")
    advertise_host: str = Field("127.0.0.1", description="address other nodes use to reach it")
    grpc_port: int = 0
    http_port: int = 0
    lease_ttl_s: int = Field(3, ge=1, le=60)
    shutdown_grace_s: float = Field(10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _apply_invite_token(cls, values: Any) -> Any:
        token_text = values.get("join") if isinstance(values, dict) else None
        if isinstance(token_text, SecretStr):
            token_text = token_text.get_secret_value()
        if not token_text:
            return values
        token = decode_token(token_text)
        from_token = {"mesh_id": token.mesh_id, "etcd_endpoints": ",".join(token.etcd)}
        # a setting left empty (as a compose file's ${VAR:-} leaves it) counts as not given
        return {**values, **{k: v for k, v in from_token.items() if not values.get(k)}}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(f"{ENV_PREFIX}CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def etcd_endpoint_list(self) -> list[str]:
        return [e.strip() for e in self.etcd_endpoints.split(",") if e.strip()]

    @property
    def credentials(self) -> Credentials | None:
        return Credentials(Path(self.tls_dir)).check() if self.tls_dir else None

    def check_startup(self) -> None:
        """Raises a MeshError (one line) for a configuration that must not start: gRPC (and a
        worker's relay) listen on bind_host, which is beyond loopback only with TLS."""
        check_exposure("gRPC and the relay", self.bind_host, self.credentials)

    @property
    def etcd_credentials(self) -> Credentials | None:
        return self.credentials if self.etcd_tls else None

    @property
    def probe_url(self) -> str:
        """Where this machine reaches the service's /readyz."""
        host = "127.0.0.1" if self.probe_host in ("0.0.0.0", "") else self.probe_host
        return f"http://{host}:{self.http_port}/readyz"

    @property
    def grpc_address(self) -> str:
        return f"{self.advertise_host}:{self.grpc_port}"

    def to_env(self) -> dict[str, str]:
        """The MESH_* environment that rebuilds these settings in another process."""
        return _flatten(self.model_dump(), ENV_PREFIX)


def _flatten(values: Mapping[str, Any], prefix: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, value in values.items():
        key = f"{prefix}{name.upper()}"
        if isinstance(value, Mapping):
            env.update(_flatten(value, key + NESTED_DELIMITER))
        elif isinstance(value, SecretStr):
            env[key] = value.get_secret_value()
        elif isinstance(value, bool):
            env[key] = "true" if value else "false"
        elif isinstance(value, list | tuple):
            env[key] = json.dumps(list(value))
        elif value is not None:
            env[key] = str(value)
    return env


class Section(BaseModel):
    """Base of nested settings groups (read from MESH_<GROUP>__<FIELD>)."""

    model_config = {"frozen": True, "extra": "forbid"}


class InvalidSettings(InvalidRequest):
    pass


Settings = TypeVar("Settings", bound=BaseServiceSettings)


def load_settings(settings_type: type[Settings], **given: Any) -> Settings:
    """Settings from `given` (flags), the environment and MESH_CONFIG. A bad value raises
    InvalidSettings whose message is one line naming each bad setting by its variable; a
    damaged invite token raises InvalidToken. Both are MeshErrors."""
    try:
        return settings_type(**given)
    except ValidationError as exc:
        raise InvalidSettings(_describe_settings_error(exc)) from exc


def _describe_settings_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        name = ENV_PREFIX + NESTED_DELIMITER.join(str(part).upper() for part in item["loc"])
        given = f" (got {item['input']!r})" if isinstance(item.get("input"), str | int) else ""
        problems.append(f"{name}: {item['msg']}{given}")
    return "bad setting: " + "; ".join(problems)
