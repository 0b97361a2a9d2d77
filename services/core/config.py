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
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "MESH_"
NESTED_DELIMITER = "__"


class BaseServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        frozen=True,
        extra="forbid",
    )

    mesh_id: str = Field("default", description="name of the mesh; every key lives under it")
    node: str = Field(default_factory=socket.gethostname, description="this machine's node id")
    etcd_endpoints: str = Field("127.0.0.1:2379", description="comma-separated host:port list")
    secret: SecretStr = Field(SecretStr(""), description="shared secret for the worker relay")
    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"
    bind_host: str = Field("127.0.0.1", description="address this service listens on")
    advertise_host: str = Field("127.0.0.1", description="address other nodes use to reach it")
    grpc_port: int = 0
    http_port: int = 0
    lease_ttl_s: int = Field(3, ge=1, le=60)
    shutdown_grace_s: float = Field(10.0, gt=0)

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
