"""`chatterbox-server` flags: every setting has one, and the model variant has the short `--variant`."""

from __future__ import annotations

import pytest
from chatterbox_server.__main__ import read_settings


@pytest.mark.parametrize(
    "argv", [["--variant", "nano"], ["--variant=nano"], ["--chatterbox-variant", "nano"]]
)
def test_variant_flag_and_its_long_form(argv: list[str]) -> None:
    assert read_settings(argv).chatterbox_variant == "nano"


def test_variant_flag_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATTERBOX_VARIANT", "turbo")
    assert read_settings([]).chatterbox_variant == "turbo"
    assert read_settings(["--variant", "nano"]).chatterbox_variant == "nano"


def test_a_bare_variant_environment_variable_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATTERBOX_VARIANT", raising=False)
    monkeypatch.setenv("VARIANT", "nano")  # too generic a name to configure the server by
    assert read_settings([]).chatterbox_variant is None


def test_unknown_variant_is_a_usage_error_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        read_settings(["--variant", "huge"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--chatterbox-variant / CHATTERBOX_VARIANT = 'huge'" in error and "'nano'" in error


def test_help_lists_the_short_variant_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        read_settings(["--help"])
    assert exit_info.value.code == 0
    assert "--variant" in capsys.readouterr().out
