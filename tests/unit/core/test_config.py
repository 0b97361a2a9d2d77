from __future__ import annotations

import pytest
from pydantic import ValidationError

from meshllm.core.config import InvalidSettings, load_settings
from meshllm.core.invite import InvalidToken, InviteToken
from meshllm.gateway.settings import GatewaySettings
from meshllm.worker.settings import SupervisorSettings, WorkerSettings


def test_to_env_rebuilds_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    original = WorkerSettings(
        node="n1",
        tls_dir="/etc/mesh",
        etcd_endpoints="10.0.0.1:2379,10.0.0.2:2379",
        models="a,b.gguf",
        supervisor=SupervisorSettings(parallel=8, extra_args=["--flash-attn", "on"]),
    )
    for key, value in original.to_env().items():
        monkeypatch.setenv(key, value)
    rebuilt = WorkerSettings()
    assert rebuilt == original
    assert rebuilt.tls_dir == "/etc/mesh"
    assert rebuilt.supervisor.extra_args == ["--flash-attn", "on"]
    assert rebuilt.model_list == ["a", "b.gguf"]


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_HTTP_PORT", "1234")
    monkeypatch.setenv("MESH_PROXY__MAX_ATTEMPTS", "7")
    assert GatewaySettings().http_port == 1234
    assert GatewaySettings().proxy.max_attempts == 7
    assert GatewaySettings(http_port=99).http_port == 99


def test_config_file_is_below_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("http_port = 5000\nconsole_port = 5001\n[proxy]\nmax_attempts = 2\n")
    monkeypatch.setenv("MESH_CONFIG", str(config))
    monkeypatch.setenv("MESH_CONSOLE_PORT", "6001")
    settings = GatewaySettings()
    assert (settings.http_port, settings.console_port, settings.proxy.max_attempts) == (
        5000,
        6001,
        2,
    )


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(lease_ttl_s=0)
    with pytest.raises(ValidationError):
        GatewaySettings(no_such_option=1)  # type: ignore[call-arg]


def token(**values: object) -> InviteToken:
    defaults = {"authority": "10.1.0.1:9339", "ca": "fp", "invite": "id.secret"}
    return InviteToken(**{**defaults, **values})  # type: ignore[arg-type]


def test_invite_token_in_the_environment_names_the_mesh(monkeypatch: pytest.MonkeyPatch) -> None:
    invite = token(mesh_id="m-42", etcd=["10.1.0.1:2379", "10.1.0.2:2379"])
    monkeypatch.setenv("MESH_JOIN", invite.encode())
    settings = WorkerSettings()
    assert settings.mesh_id == "m-42"
    assert settings.etcd_endpoint_list == ["10.1.0.1:2379", "10.1.0.2:2379"]
    monkeypatch.setenv("MESH_ETCD_ENDPOINTS", "")
    assert WorkerSettings().etcd_endpoint_list == ["10.1.0.1:2379", "10.1.0.2:2379"]
    monkeypatch.setenv("MESH_ETCD_ENDPOINTS", "10.9.9.9:2379")
    assert WorkerSettings().etcd_endpoint_list == ["10.9.9.9:2379"]
    assert WorkerSettings().mesh_id == "m-42"


def test_a_damaged_invite_token_is_refused_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    damaged = token(mesh_id="m", etcd=["10.1.0.1:2379"]).encode()[:-3]
    monkeypatch.setenv("MESH_JOIN", damaged)
    with pytest.raises(InvalidToken, match="damaged"):
        GatewaySettings()


def test_bad_settings_are_named_by_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_LEASE_TTL_S", "soon")
    monkeypatch.setenv("MESH_PROXY__MAX_ATTEMPTS", "many")
    with pytest.raises(InvalidSettings) as caught:
        load_settings(GatewaySettings)
    line = caught.value.message
    assert "\n" not in line
    assert "MESH_LEASE_TTL_S" in line and "'soon'" in line
    assert "MESH_PROXY__MAX_ATTEMPTS" in line
