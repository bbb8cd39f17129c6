import sys
import textwrap
from pathlib import Path

import pytest

from tokenwire.backends.echo import EchoBackend
from tokenwire.plugins import PluginError, import_from_string, list_plugins, load_plugin


def test_builtins_are_registered_as_entry_points() -> None:
    assert list_plugins("backends")["echo"] == "tokenwire.backends.echo:EchoBackend"
    assert {"openai-chat", "openai-completions", "anthropic", "gemini"} <= set(
        list_plugins("dialects")
    )
    assert {"sse", "ndjson", "websocket"} <= set(list_plugins("transports"))


def test_load_plugin_by_entry_point_name() -> None:
    assert load_plugin("backends", "echo") is EchoBackend


def test_load_plugin_by_import_string() -> None:
    assert load_plugin("backends", "tokenwire.backends.echo:EchoBackend") is EchoBackend


def test_unknown_name_lists_the_known_names() -> None:
    with pytest.raises(PluginError, match=r"unknown backend 'nope'; known backends: .*echo"):
        load_plugin("backends", "nope")


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(PluginError, match="unknown plugin kind"):
        list_plugins("widgets")  # type: ignore[arg-type]


def test_failing_plugin_import_chains_its_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_plugin.py").write_text(
        textwrap.dedent(
            """
            import this_module_does_not_exist_anywhere
            class Backend: ...
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="importing 'broken_plugin' failed") as info:
        load_plugin("backends", "broken_plugin:Backend")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    sys.modules.pop("broken_plugin", None)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon_here", "must be in the form"),
        ("tokenwire_missing_module_x:Thing", "could not import module"),
        ("tokenwire.backends.echo:Missing", "has no attribute"),
    ],
)
def test_bad_import_strings_say_what_is_wrong(target: str, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        import_from_string(target)
