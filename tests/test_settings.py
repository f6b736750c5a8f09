"""Settings: env over toml over defaults; a bad value names the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.settings import Settings, SettingsError, load_settings


def test_defaults_need_nothing(tmp_path: Path) -> None:
    s = load_settings(env={}, toml_path=None)
    assert s.port == 8090
    assert s.max_body_size == 32 * 1024 * 1024
    assert not s.is_postgres


def test_env_overrides_toml(tmp_path: Path) -> None:
    toml = tmp_path / "shipyard.toml"
    toml.write_text("port = 9000\nmax_per_page = 50\ndefault_per_page = 10\n")
    s = load_settings(env={"SHIPYARD_PORT": "9100"}, toml_path=toml)
    assert s.port == 9100
    assert s.max_per_page == 50
    assert s.default_per_page == 10


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SHIPYARD_PORT": "abc"}, "SHIPYARD_PORT"),
        ({"SHIPYARD_PORT": "0"}, "SHIPYARD_PORT"),
        ({"SHIPYARD_WORKERS": "-1"}, "SHIPYARD_WORKERS"),
        ({"SHIPYARD_DATABASE_URL": "mysql://x"}, "SHIPYARD_DATABASE_URL"),
        ({"SHIPYARD_DEMO": "perhaps"}, "SHIPYARD_DEMO"),
        ({"SHIPYARD_DEFAULT_PER_PAGE": "5000"}, "SHIPYARD_DEFAULT_PER_PAGE"),
        ({"SHIPYARD_QUERY_BUDGET_MS": "-1"}, "SHIPYARD_QUERY_BUDGET_MS"),
        ({"SHIPYARD_MAX_FILTER_COLLECTION_JOINS": "-1"}, "SHIPYARD_MAX_FILTER_COLLECTION_JOINS"),
        ({"SHIPYARD_MAX_FILTER_BACK_RELATIONS": "-1"}, "SHIPYARD_MAX_FILTER_BACK_RELATIONS"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        load_settings(env=env)


def test_bad_toml(tmp_path: Path) -> None:
    toml = tmp_path / "shipyard.toml"
    toml.write_text("nosuch = 1\n")
    with pytest.raises(SettingsError, match="nosuch"):
        load_settings(env={}, toml_path=toml)


# ---------------------------------------------------------------- the settings file named


def test_a_named_file_that_is_missing_stops_startup(tmp_path: Path) -> None:
    missing = tmp_path / "prod.toml"
    with pytest.raises(SettingsError) as exc:
        load_settings(env={"SHIPYARD_CONFIG": str(missing)})
    assert str(exc.value) == f"SHIPYARD_CONFIG: the settings file {missing} does not exist"
    with pytest.raises(SettingsError, match="is not a file"):
        load_settings(env={"SHIPYARD_CONFIG": str(tmp_path)})


def test_without_a_named_file_a_missing_shipyard_toml_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}).port == 8090
    assert load_settings(env={"SHIPYARD_CONFIG": ""}).port == 8090


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 'abc'", "port in {path}: expected an integer, got 'abc'"),
        ("port = 0", "port in {path}: must be greater than 0"),
        ("port = 70000", "port in {path}: must be at most 65535"),
        ("nosuch = 1", "nosuch in {path}: unknown setting"),
        ("[server]\nport = 1", "server in {path}: unknown setting"),
        (
            "max_per_page = 10\ndefault_per_page = 20",
            "default_per_page in {path}: must not exceed max_per_page in {path}",
        ),
        ("log_level = 'loud'", "log_level in {path}: must be one of debug, info, warning, error"),
        ("cache_ttls = 'posts'", "cache_ttls in {path}: expected name=seconds"),
        ("webhook_allow_private = '300.1.1.1'", "webhook_allow_private in {path}: '300.1.1.1'"),
        (
            "redis_retry_interval = 0",
            "SHIPYARD_REDIS_TIMEOUT and redis_retry_interval in {path}: must be greater than 0",
        ),
        ("cors_origins = 'example.com'", "cors_origins in {path}: 'example.com' is not an origin"),
        ("port = ", "{path}: not valid TOML"),
    ],
)
def test_every_error_in_a_file_names_that_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "conf" / "prod.toml"
    path.parent.mkdir()
    path.write_text(text + "\n")
    for env, toml_path in (({"SHIPYARD_CONFIG": str(path)}, None), ({}, path)):
        with pytest.raises(SettingsError) as exc:
            load_settings(env=env, toml_path=toml_path)
        assert str(exc.value).startswith(message.format(path=path)), str(exc.value)


def test_a_file_that_is_not_utf8_names_that_file(tmp_path: Path) -> None:
    path = tmp_path / "prod.toml"
    path.write_bytes(b"app_name = '\xff'\n")
    with pytest.raises(SettingsError) as exc:
        load_settings(env={"SHIPYARD_CONFIG": str(path)})
    assert str(exc.value) == f"{path}: not valid TOML (the file is not UTF-8)"


def test_every_positive_setting_from_a_file_names_that_file(tmp_path: Path) -> None:
    from shipyard.settings import _POSITIVE_INTS

    path = tmp_path / "prod.toml"
    for name in sorted(_POSITIVE_INTS):
        path.write_text(f"{name} = 0\n")
        with pytest.raises(SettingsError) as exc:
            load_settings(env={"SHIPYARD_CONFIG": str(path)})
        assert str(exc.value).startswith(f"{name} in {path}: "), str(exc.value)


def test_a_value_the_environment_overrides_is_not_blamed_on_the_file(tmp_path: Path) -> None:
    path = tmp_path / "prod.toml"
    path.write_text("port = 0\n")
    assert load_settings(env={"SHIPYARD_CONFIG": str(path), "SHIPYARD_PORT": "9000"}).port == 9000
    path.write_text("port = 9000\n")
    with pytest.raises(SettingsError) as exc:
        load_settings(env={"SHIPYARD_CONFIG": str(path), "SHIPYARD_PORT": "0"})
    assert str(exc.value) == "SHIPYARD_PORT: must be greater than 0"


def test_sources_name_what_set_each_value(tmp_path: Path) -> None:
    """What the runtime settings API shows as read-only (docs/settings-api.md)."""
    path = tmp_path / "shipyard.toml"
    path.write_text('app_name = "Acme"\nsmtp_port = 25\n')
    env = {"SHIPYARD_CONFIG": str(path), "SHIPYARD_SMTP_PORT": "2525"}
    s = load_settings(env=env, smtp_host="mail.test")
    assert dict(s.sources) == {
        "app_name": f"app_name in {path}",
        "smtp_port": "SHIPYARD_SMTP_PORT",
        "smtp_host": "the start-up option smtp_host",
    }
    # not compared: equal settings from other places are equal
    assert s == Settings(app_name="Acme", smtp_port=2525, smtp_host="mail.test")
    assert "sources" not in repr(s)
    assert Settings().sources == {}
    with pytest.raises(SettingsError, match="sources: unknown setting"):
        load_settings(env={}, sources={"x": "y"})
