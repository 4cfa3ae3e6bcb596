"""The clinic file the actions and the session start read."""
from datetime import time

import pytest

from clinic_core.clinic import ClinicConfigError, load_clinic
from clinic_core.settings import CLINIC_FILE

CLINIC_YAML = """
name: Test Clinic
phone: "(555) 000-1111"
email: hello@test.example
address: 1 Test Road
website: https://test.example
timezone: America/New_York
hours:
  monday: "08:30-17:00"
  tuesday: "08:30-17:00"
  wednesday: "08:30-17:00"
  thursday: "08:30-17:00"
  friday: "08:30-12:00"
  saturday: closed
"""


def test_clinic_file_of_the_project_loads():
    clinic = load_clinic(CLINIC_FILE)
    assert set(clinic.slots()) == {"clinic_name", "clinic_phone", "clinic_email", "clinic_address",
                                   "clinic_website", "clinic_hours"}
    assert all(clinic.slots().values())


def test_fill_puts_the_clinics_details_into_a_response_text():
    clinic = load_clinic(CLINIC_FILE)
    text = clinic.fill("Call {clinic_phone} at {clinic_name}; {other} stays.")
    assert text == f"Call {clinic.phone} at {clinic.name}; {{other}} stays."


def test_hours_are_summarised_by_runs_of_days(tmp_path):
    path = tmp_path / "clinic.yml"
    path.write_text(CLINIC_YAML)
    clinic = load_clinic(path)
    assert clinic.hours["monday"] == (time(8, 30), time(17, 0))
    assert clinic.hours["sunday"] is None  # a day left out is closed
    assert clinic.hours_summary() == "Mon-Thu 8:30 AM-5:00 PM, Fri 8:30 AM-12:00 PM, Sat-Sun closed"


@pytest.mark.parametrize("broken, message", [
    (CLINIC_YAML.replace("name: Test Clinic\n", ""), "missing name"),
    (CLINIC_YAML.replace('"08:30-12:00"', '"noon"'), "hours.friday"),
    (CLINIC_YAML.replace('"08:30-12:00"', '"12:00-08:30"'), "before closing"),
    (CLINIC_YAML.replace("saturday", "caturday"), "unknown days"),
    (CLINIC_YAML.replace("America/New_York", "Eastern"), "timezone: unknown time zone 'Eastern'"),
    (CLINIC_YAML.replace("https://test.example", "test dot example"), "website"),
    (CLINIC_YAML.split("hours:")[0] + "hours: weekdays\n", "hours: expected one line per day"),
    ("name: [unclosed", "not valid YAML"),
    ("- just a list", "expected name, phone"),
])
def test_a_broken_clinic_file_is_explained(tmp_path, broken, message):
    path = tmp_path / "clinic.yml"
    path.write_text(broken)
    with pytest.raises(ClinicConfigError, match=message):
        load_clinic(path)


def test_missing_clinic_file_is_explained(tmp_path):
    with pytest.raises(ClinicConfigError, match="not found"):
        load_clinic(tmp_path / "nope.yml")
