"""Issue 13: the channels' and the action server's settings are checked once, at start."""
import os
import subprocess
import sys

import pytest

import channels.settings
from actions.server import ActionServerSettingsError, action_server_token
from channels.settings import ChannelSettingsError, load_channel_settings
from tests.conftest import ROOT


def test_the_defaults_are_safe():
    settings = load_channel_settings({})
    assert settings.max_message_chars == 2000 and settings.max_request_bytes == 256 * 1024
    assert settings.allowed_origins == ("http://localhost:8080", "http://127.0.0.1:8080")
    assert len(settings.session_signing_key) >= 32


@pytest.mark.parametrize("environ, setting", [
    ({"ALLOWED_ORIGINS": "*"}, "ALLOWED_ORIGINS"),
    ({"ALLOWED_ORIGINS": "https://clinic.test/chat"}, "ALLOWED_ORIGINS"),
    ({"ALLOWED_ORIGINS": "clinic.test"}, "ALLOWED_ORIGINS"),
    ({"MAX_MESSAGE_CHARS": "lots"}, "MAX_MESSAGE_CHARS"),
    ({"MAX_MESSAGE_CHARS": "10"}, "MAX_MESSAGE_CHARS"),
    ({"MAX_REQUEST_BYTES": "1000"}, "MAX_REQUEST_BYTES"),  # smaller than a message at the cap
    ({"SESSION_SIGNING_KEY": "short"}, "SESSION_SIGNING_KEY"),
])
def test_a_bad_channel_setting_is_refused_by_name(environ, setting):
    with pytest.raises(ChannelSettingsError, match=setting):
        load_channel_settings(environ)


def test_the_frame_message_states_the_retention_the_purge_uses():
    assert load_channel_settings({}).conversation_retention_days == 30
    assert load_channel_settings({"CONVERSATION_RETENTION_DAYS": "14"}).conversation_retention_days == 14
    with pytest.raises(ChannelSettingsError, match="CONVERSATION_RETENTION_DAYS"):
        load_channel_settings({"CONVERSATION_RETENTION_DAYS": "soon"})


def test_a_broken_clinic_file_stops_the_rasa_server_at_start(tmp_path, monkeypatch):
    # The session start reads it in the Rasa server (channels/handler.py).
    broken = tmp_path / "clinic.yml"
    broken.write_text("name: [unclosed")
    monkeypatch.setattr(channels.settings, "CLINIC_FILE", broken)
    with pytest.raises(ChannelSettingsError, match="clinic"):
        load_channel_settings({})


@pytest.mark.parametrize("token", ["", "   ", "x" * 31])
def test_the_action_server_needs_a_long_token(token):
    with pytest.raises(ActionServerSettingsError, match="ACTION_SERVER_TOKEN"):
        action_server_token({"ACTION_SERVER_TOKEN": token})


def test_the_action_server_does_not_start_without_its_token():
    environ = {name: value for name, value in os.environ.items() if name != "ACTION_SERVER_TOKEN"}
    started = subprocess.run([sys.executable, "-m", "actions.server"], cwd=ROOT, env=environ,
                             capture_output=True, text=True, timeout=120)
    assert started.returncode != 0 and "ACTION_SERVER_TOKEN" in started.stderr


def test_the_service_runners_read_the_channel_settings_without_loading_rasa():
    """make run's supervisor held 470 MB when the channels package loaded Rasa for them."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; import scripts.run_all, scripts.run_production; "
         "print(sorted({m.split('.')[0] for m in sys.modules} & {'rasa', 'tensorflow', 'numpy'}))"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
