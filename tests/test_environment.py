"""Settings from a dotenv file, and which process is given which secret (clinic_core/environment.py)."""
import os
import re

from clinic_core.environment import SECRET_USERS, environment_for, load_env_file
from tests.conftest import ROOT


def test_a_dotenv_file_keeps_hashes_dollars_and_quotes_and_the_environment_wins(tmp_path):
    path = tmp_path / ".env"
    path.write_text("SMTP_PASSWORD='pa#ss$word'\n"
                    'SMTP_USER="relay user"  # the relay\'s login\n'
                    "# a comment line\n"
                    "STAFF_EMAIL=team@clinic.test # trailing comment\n"
                    "SMTP_HOST=from-the-file\n")
    environ = {"ENV_FILE": str(path), "SMTP_HOST": "from-the-environment"}
    assert load_env_file(environ) == path
    assert environ["SMTP_PASSWORD"] == "pa#ss$word"
    assert environ["SMTP_USER"] == "relay user"
    assert environ["STAFF_EMAIL"] == "team@clinic.test"
    assert environ["SMTP_HOST"] == "from-the-environment"


def test_no_file_changes_nothing(tmp_path):
    environ = {"ENV_FILE": str(tmp_path / "missing.env")}
    assert load_env_file(environ) is None and environ == {"ENV_FILE": str(tmp_path / "missing.env")}
    assert load_env_file({"ENV_FILE": os.devnull}) is None


def test_each_process_gets_only_its_own_secrets():
    everything = {secret: "s3cret" for secret in SECRET_USERS} | {"RASA_PORT": "5005"}
    assert set(environment_for("sender", everything)) == {
        "SMTP_USER", "SMTP_PASSWORD", "STAFF_WEBHOOK_URL", "DATABASE_URL", "RASA_PORT", "ENV_FILE"}
    assert set(environment_for("inbox", everything)) == {"STAFF_INBOX_SECRET_KEY", "DATABASE_URL",
                                                         "TRACKER_DATABASE_URL", "RASA_PORT", "ENV_FILE"}
    rasa = {"ACTION_SERVER_TOKEN", "SESSION_SIGNING_KEY", "TRACKER_DB_PASSWORD", "REDIS_PASSWORD",
            "SOCKETIO_REDIS_URL", "RASA_PORT", "ENV_FILE"}
    assert set(environment_for("rasa", everything)) == set(environment_for("rasa-2", everything)) == rasa
    assert set(environment_for("demo-site", everything)) == {"RASA_PORT", "ENV_FILE"}
    assert environment_for("actions", everything)["ENV_FILE"] == os.devnull
    assert not any("POSTGRES_PASSWORD" in environment_for(name, everything)
                   for name in ("rasa", "actions", "sender", "inbox", "purge", "demo-site"))


SETTING_READ = re.compile(r'(?:environ(?:\.get)?\(?\[?|_(?:get|number|flag|days|web_address|networks)\(environ, )'
                          r'"([A-Z][A-Z0-9_]+)"')


def test_every_setting_the_code_reads_is_documented_in_env_example():
    read = {name for folder in ("clinic_core", "channels", "actions", "staff", "scripts", "components")
            for path in (ROOT / folder).rglob("*.py") for name in SETTING_READ.findall(path.read_text())}
    assert {"DATABASE_URL", "SMTP_PASSWORD", "OUTBOX_CLAIM_BATCH"} <= read  # the pattern finds them
    example = (ROOT / ".env.example").read_text()
    assert [name for name in sorted(read) if not re.search(rf"(?m)^# ?{name}=|\b{name}=", example)] == []
