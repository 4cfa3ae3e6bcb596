"""The clinic's details from clinic.yml, which a clinic edits without touching code."""
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from clinic_core.settings import is_web_address

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
REQUIRED_FIELDS = ("name", "phone", "email", "address", "website", "timezone", "hours")

OpeningHours = Optional[Tuple[time, time]]  # None when closed


class ClinicConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Clinic:
    name: str
    phone: str
    email: str
    address: str
    website: str
    timezone: str
    hours: Dict[str, OpeningHours]

    def hours_summary(self) -> str:
        """"Mon-Thu 9:00 AM-5:00 PM, Fri 9:00 AM-4:00 PM, Sat-Sun closed"."""
        groups: List[Tuple[List[str], OpeningHours]] = []
        for day in WEEKDAYS:
            if groups and groups[-1][1] == self.hours[day]:
                groups[-1][0].append(day)
            else:
                groups.append(([day], self.hours[day]))
        parts = []
        for days, opening in groups:
            label = days[0][:3].title() if len(days) == 1 else f"{days[0][:3].title()}-{days[-1][:3].title()}"
            parts.append(f"{label} {_format_opening(opening)}")
        return ", ".join(parts)

    def slots(self) -> Dict[str, str]:
        """Values for the clinic_* slots that responses use."""
        return {
            "clinic_name": self.name,
            "clinic_phone": self.phone,
            "clinic_email": self.email,
            "clinic_address": self.address,
            "clinic_website": self.website,
            "clinic_hours": self.hours_summary(),
        }

    def fill(self, text: str) -> str:
        """A response text as the visitor sees it: the clinic_* placeholders filled in."""
        for slot, value in self.slots().items():
            text = text.replace("{" + slot + "}", value)
        return text


def format_time(value: time) -> str:
    return value.strftime("%I:%M %p").lstrip("0")


def _format_opening(opening: OpeningHours) -> str:
    if opening is None:
        return "closed"
    return f"{format_time(opening[0])}-{format_time(opening[1])}"


def _parse_opening(day: str, value: str) -> OpeningHours:
    if str(value).strip().lower() == "closed":
        return None
    try:
        start, end = (time.fromisoformat(part.strip()) for part in str(value).split("-"))
    except ValueError as error:
        raise ClinicConfigError(f'hours.{day}: expected "HH:MM-HH:MM" or "closed", got "{value}"') from error
    if start >= end:
        raise ClinicConfigError(f"hours.{day}: opening time must be before closing time")
    return start, end


def load_clinic(path: Path) -> Clinic:
    """Raises ClinicConfigError, naming the field, for anything the assistant could not use."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as error:
        raise ClinicConfigError(f"clinic file not found: {path}") from error
    except yaml.YAMLError as error:
        raise ClinicConfigError(f"{path}: not valid YAML ({type(error).__name__})") from error
    if not isinstance(data, dict):
        raise ClinicConfigError(f"{path}: expected name, phone, email, address, website, timezone and hours")
    missing = [field for field in REQUIRED_FIELDS if not data.get(field)]
    if missing:
        raise ClinicConfigError(f"{path}: missing {', '.join(missing)}")
    try:
        ZoneInfo(str(data["timezone"]))
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ClinicConfigError(f"{path}: timezone: unknown time zone {data['timezone']!r} "
                                f"(an IANA name such as America/New_York)") from error
    if not is_web_address(str(data["website"])):
        raise ClinicConfigError(f"{path}: website: expected an address like https://www.example-clinic.test, "
                                f"not {data['website']!r}")
    hours = data["hours"]
    if not isinstance(hours, dict):
        raise ClinicConfigError(f"{path}: hours: expected one line per day, like monday: \"09:00-17:00\"")
    unknown = set(hours) - set(WEEKDAYS)
    if unknown:
        raise ClinicConfigError(f"{path}: unknown days in hours: {', '.join(sorted(unknown))}")
    return Clinic(
        name=str(data["name"]),
        phone=str(data["phone"]),
        email=str(data["email"]),
        address=str(data["address"]),
        website=str(data["website"]),
        timezone=str(data["timezone"]),
        hours={day: _parse_opening(day, hours.get(day, "closed")) for day in WEEKDAYS},
    )
