"""Finds and normalises the phone number and email a visitor types.

Phone numbers: US (NANP) only, normalised to E.164 (+1XXXXXXXXXX). Emails: checked by
syntax only, the domain lower-cased. Nothing here is sent to the visitor as text.
"""
import re
from dataclasses import dataclass, field
from typing import List, Optional

# A run of digits and the separators people type between them, optionally after "+".
PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d\s().\-]{5,}\d")
EMAIL_CANDIDATE = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")
EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
EMAIL_DOMAIN_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# NANP: area code and exchange both start with 2-9.
NANP = re.compile(r"^[2-9]\d{2}[2-9]\d{6}$")

PHONE_NOT_US = "phone_not_us"
PHONE_INVALID = "phone_invalid"
EMAIL_INVALID = "email_invalid"


@dataclass
class ContactDetails:
    phone: Optional[str] = None
    email: Optional[str] = None
    problems: List[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.phone or self.email)

    def summary(self) -> str:
        return ", ".join(value for value in (self.phone, self.email) if value)


def normalise_us_phone(candidate: str) -> Optional[str]:
    """"(415) 555-0132" -> "+14155550132"; None when it is not a valid US number."""
    digits = re.sub(r"\D", "", candidate)
    if candidate.strip().startswith("+") and not digits.startswith("1"):
        return None
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return f"+1{digits}" if NANP.match(digits) else None


def normalise_email(candidate: str) -> Optional[str]:
    candidate = candidate.strip().rstrip(".!?")
    local, _, domain = candidate.rpartition("@")
    labels = domain.split(".")
    if (not local or len(candidate) > 254 or len(local) > 64 or not EMAIL_LOCAL.match(local)
            or len(labels) < 2 or not all(EMAIL_DOMAIN_LABEL.match(label) for label in labels)
            or not labels[-1].isalpha()):
        return None
    return f"{local}@{domain.lower()}"


def has_contact_candidate(text: str) -> bool:
    return bool(EMAIL_CANDIDATE.search(text) or PHONE_CANDIDATE.search(text))


def parse_contact_details(text: str) -> ContactDetails:
    details = ContactDetails()
    for match in EMAIL_CANDIDATE.finditer(text):
        email = normalise_email(match.group())
        if email and not details.email:
            details.email = email
        elif not email:
            details.problems.append(EMAIL_INVALID)
    # Emails can hold digits; look for phone numbers in the rest.
    rest = EMAIL_CANDIDATE.sub(" ", text)
    for match in PHONE_CANDIDATE.finditer(rest):
        candidate = match.group()
        if len(re.sub(r"\D", "", candidate)) < 7:
            continue
        phone = normalise_us_phone(candidate)
        if phone and not details.phone:
            details.phone = phone
        elif not phone:
            not_us = candidate.strip().startswith("+") and not candidate.strip().startswith("+1")
            details.problems.append(PHONE_NOT_US if not_us else PHONE_INVALID)
    return details
