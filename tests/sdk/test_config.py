"""Where a client finds its URL and key: arguments, environment, config-file profiles."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import trainport
from trainport.config import DEFAULT_BASE_URL, ConfigFile, resolve


def write_profiles(path: Path) -> None:
    config = ConfigFile(path, active_profile="work")
    config.set_value("work", "api_url", "http://work.example:8000/")
    config.set_value("work", "api_key", "tp_work")
    config.set_value("home", "api_url", "http://home.example")
    config.set_value("home", "api_key", "tp_home")
    config.set_value("home", "project", "hobby")
    config.save()


def test_without_a_key_the_client_fails_at_once_saying_how_to_fix_it() -> None:
    with pytest.raises(trainport.ConfigurationError) as raised:
        trainport.Client()
    message = str(raised.value)
    assert "TRAINPORT_API_KEY" in message
    assert "trainport login" in message


def test_the_environment_supplies_url_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINPORT_API_URL", "http://env.example:9000/")
    monkeypatch.setenv("TRAINPORT_API_KEY", "tp_env")
    client = trainport.Client()
    assert (client.base_url, client.config.api_key) == ("http://env.example:9000", "tp_env")
    explicit = trainport.Client(base_url="http://arg.example", api_key="tp_arg")
    assert (explicit.base_url, explicit.config.api_key) == ("http://arg.example", "tp_arg")


def test_the_active_profile_is_used_and_another_can_be_chosen(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profiles(config_file)
    assert resolve().base_url == "http://work.example:8000"
    assert resolve().api_key == "tp_work"
    home = resolve(profile="home")
    assert (home.base_url, home.api_key, home.project) == (
        "http://home.example",
        "tp_home",
        "hobby",
    )
    monkeypatch.setenv("TRAINPORT_PROFILE", "home")
    assert trainport.Client().config.api_key == "tp_home"
    monkeypatch.setenv("TRAINPORT_API_KEY", "tp_env")  # the environment beats the file
    assert trainport.Client().config.api_key == "tp_env"


def test_an_unknown_profile_is_a_configuration_error(config_file: Path) -> None:
    write_profiles(config_file)
    with pytest.raises(trainport.ConfigurationError, match="No profile 'nope'"):
        trainport.Client(profile="nope")
    assert resolve(profile="nope", must_exist=False).base_url == DEFAULT_BASE_URL


def test_the_config_file_is_written_private_and_read_back(config_file: Path) -> None:
    write_profiles(config_file)
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    again = ConfigFile.load(config_file)
    assert again.active_profile == "work"
    assert again.profiles["home"] == {
        "api_url": "http://home.example",
        "api_key": "tp_home",
        "project": "hobby",
    }


def test_a_malformed_config_file_is_reported_with_its_path(config_file: Path) -> None:
    config_file.write_text("[profiles.default\napi_key = ")
    with pytest.raises(trainport.ConfigurationError, match=str(config_file)):
        trainport.Client()


def test_unknown_settings_and_bad_profile_names_are_refused(tmp_path: Path) -> None:
    config = ConfigFile(tmp_path / "c.toml")
    with pytest.raises(trainport.ConfigurationError, match="Unknown setting"):
        config.set_value("default", "colour", "blue")
    with pytest.raises(trainport.ConfigurationError, match="Profile name"):
        config.set_value("bad name]", "api_key", "tp_x")
