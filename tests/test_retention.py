"""Retention: the settings."""
import pytest

from actions.settings import SettingsError, load_settings
from tests.conftest import ROOT

# --- settings -----------------------------------------------------------------------------

def test_the_defaults_keep_conversations_30_days_and_handoffs_a_year():
    settings = load_settings({})
    assert (settings.conversation_retention_days, settings.handoff_retention_days) == (30, 365)
    assert settings.tracker_database_url == f"sqlite:///{ROOT / 'var' / 'tracker.db'}"


def test_the_tracker_database_follows_tracker_db_as_make_run_does(tmp_path):
    relative, absolute = "var/other.db", str(tmp_path / "t.db")
    assert load_settings({"TRACKER_DB": relative}).tracker_database_url == f"sqlite:///{ROOT / relative}"
    assert load_settings({"TRACKER_DB": absolute}).tracker_database_url == f"sqlite:///{absolute}"


def test_retention_days_are_read():
    settings = load_settings({"CONVERSATION_RETENTION_DAYS": "7", "HANDOFF_RETENTION_DAYS": " 90 "})
    assert (settings.conversation_retention_days, settings.handoff_retention_days) == (7, 90)


@pytest.mark.parametrize("name", ["CONVERSATION_RETENTION_DAYS", "HANDOFF_RETENTION_DAYS"])
@pytest.mark.parametrize("value", ["0", "-5", "3.5", "thirty", "1e3", "²", "36501", "9" * 5000])
def test_a_retention_that_is_not_a_whole_number_of_days_is_refused_by_name(name, value):
    with pytest.raises(SettingsError, match=f"{name} must be a whole number of days from 1 to 36500"):
        load_settings({name: value})
