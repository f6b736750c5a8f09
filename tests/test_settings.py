"""Settings: env over toml over defaults; a bad value names the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.settings import SettingsError, load_settings


def test_defaults_need_nothing(tmp_path: Path) -> None:
    s = load_settings(env={}, toml_path=None)
    assert s.port == 8090 and s.max_body_size == 32 * 1024 * 1024 and not s.is_postgres


def test_env_overrides_toml(tmp_path: Path) -> None:
    toml = tmp_path / "shipyard.toml"
    toml.write_text("port = 9000\nmax_per_page = 50\ndefault_per_page = 10\n")
    s = load_settings(env={"SHIPYARD_PORT": "9100"}, toml_path=toml)
    assert s.port == 9100 and s.max_per_page == 50 and s.default_per_page == 10


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
