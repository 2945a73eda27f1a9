"""Settings from a TOML file (CLARITY_CONFIG, or CLARITY_HOME/config.toml) and CLARITY_* variables:
the variable wins over the file; a mistake in the file names the file and the setting, and a
misspelt setting gets the one meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.settings import Settings, SettingsError


def test_the_file_is_read_and_a_variable_wins(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('rate_limit = 30\nport = 9090\nlog_format = "json"\n')
    settings = Settings.from_env({"CLARITY_HOME": str(tmp_path), "CLARITY_PORT": "9191"})
    assert (settings.rate_limit, settings.port, settings.log_format) == (30, 9191, "json")


def test_a_misspelt_setting_is_named_with_the_one_meant(tmp_path: Path) -> None:
    config = tmp_path / "clarity.toml"
    config.write_text("rate_limt = 5\n")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"CLARITY_HOME": str(tmp_path), "CLARITY_CONFIG": str(config)})
    assert str(caught.value).startswith(f"config file {config}: unknown setting(s) rate_limt "
                                        "(did you mean: rate_limt -> rate_limit?) (known: ")


def test_a_bad_value_in_the_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('rate_limit = "ten"\n')
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"CLARITY_HOME": str(tmp_path)})
    assert str(caught.value) == (f"config file {tmp_path / 'config.toml'}: rate_limit='ten': expected a whole number, "
                                 "at least 0")
