"""Staff email is encrypted by default: STARTTLS or TLS against real local SMTP servers (aiosmtpd)
with a certificate made for the test, and plain text only to this machine or when allowed.

The test's certificate authority is trusted through OpenSSL's SSL_CERT_FILE, the way an operator
would trust a private one; nothing in the sender skips the certificate check.
"""
import datetime
import ipaddress
import ssl
import subprocess
import sys
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clinic_core.settings import SettingsError, load_settings
from clinic_core.storage import HandoffRequest, HandoffStore
from staff.sender import run_once
from tests.conftest import ROOT
from tests.local_servers import free_port

REQUEST = HandoffRequest(full_name="Dana Whitaker", phone="+15035550147", email=None,
                         preferred_time="weekday afternoons", reason=None, consent=True,
                         conversation_id="visitor-7", visitor_messages=["hello"])


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate file, key file)."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_file, key_file = directory / "smtp.crt", directory / "smtp.key"
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return certificate_file, key_file


@pytest.fixture
def trusted(certificate, monkeypatch):
    """The test's certificate is the one authority the sender trusts (OpenSSL reads SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def server_context(certificate):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


class Mailbox:
    """Keeps each delivered message with whether its session was encrypted."""

    def __init__(self):
        self.delivered = []  # (encrypted, message bytes)

    async def handle_DATA(self, server, session, envelope):
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        self.delivered.append((encrypted, envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def start_server():
    controllers = []

    def start(host="127.0.0.1", **options):
        mailbox = Mailbox()
        controller = Controller(mailbox, hostname=host, port=free_port(), **options)
        controller.start()
        controllers.append(controller)
        return controller.port, mailbox

    yield start
    for controller in controllers:
        controller.stop()


def send_one(tmp_path, **environ):
    settings = load_settings({"DATABASE_URL": f"sqlite:///{tmp_path / 'handoffs.db'}",
                              "STAFF_EMAIL": "team@clinic.test", **environ})
    store = HandoffStore(settings.database_url)
    store.create_handoff(REQUEST)
    delivered = run_once(store, settings)  # renders per its settings, then sends
    [notification] = store.notifications()
    return delivered, notification


# --- settings ------------------------------------------------------------------------------

@pytest.mark.parametrize("host, security, port", [
    ("smtp.example-clinic.test", "starttls", 587),  # any other machine: STARTTLS unless told otherwise
    ("192.0.2.25", "starttls", 587),
    ("localhost", "none", 25),                      # a relay on this machine: plain SMTP
    ("127.0.0.1", "none", 25),
    ("::1", "none", 25),
])
def test_smtp_is_encrypted_by_default_except_to_this_machine(host, security, port):
    settings = load_settings({"SMTP_HOST": host})
    assert (settings.smtp_security, settings.smtp_port) == (security, port)


def test_implicit_tls_defaults_to_port_465_and_a_set_port_wins():
    assert load_settings({"SMTP_HOST": "smtp.example-clinic.test", "SMTP_SECURITY": "tls"}).smtp_port == 465
    assert load_settings({"SMTP_HOST": "smtp.example-clinic.test", "SMTP_PORT": "2525"}).smtp_port == 2525


@pytest.mark.parametrize("host", ["smtp.example-clinic.test", "192.0.2.25", "10.0.0.5", "2001:db8::25"])
def test_plain_text_to_another_machine_is_refused_at_start_unless_allowed(host):
    environ = {"SMTP_HOST": host, "SMTP_SECURITY": "none"}
    with pytest.raises(SettingsError, match="SMTP_SECURITY=none.*SMTP_ALLOW_PLAINTEXT=true"):
        load_settings(environ)
    settings = load_settings({**environ, "SMTP_ALLOW_PLAINTEXT": "true"})
    assert (settings.smtp_security, settings.smtp_allow_plaintext) == ("none", True)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.0.0.53", "::1", "[::1]"])
def test_plain_text_to_this_machine_needs_no_permission(host):
    assert load_settings({"SMTP_HOST": host, "SMTP_SECURITY": "none"}).smtp_security == "none"


@pytest.mark.parametrize("environ, named", [
    ({"SMTP_SECURITY": "ssl"}, "SMTP_SECURITY"),
    ({"SMTP_SECURITY": "yes please"}, "SMTP_SECURITY"),
    ({"SMTP_ALLOW_PLAINTEXT": "maybe"}, "SMTP_ALLOW_PLAINTEXT"),
])
def test_a_wrong_smtp_setting_is_named(environ, named):
    with pytest.raises(SettingsError, match=named):
        load_settings({"SMTP_HOST": "smtp.example-clinic.test", **environ})


def test_the_sender_refuses_to_start_with_plain_text_to_another_machine(tmp_path):
    """The real process, as `make run` starts it: exit 2 (a wrong setting, not restarted), naming it."""
    environ = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'handoffs.db'}",
               "STAFF_EMAIL": "team@clinic.test", "SMTP_HOST": "smtp.example-clinic.test", "SMTP_SECURITY": "none"}
    for command in ([sys.executable, "-m", "staff.sender"], [sys.executable, "scripts/run_all.py"]):
        result = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert "SMTP_SECURITY=none" in output and "SMTP_ALLOW_PLAINTEXT=true" in output
        assert "started (pid" not in output


# --- against real SMTP servers -------------------------------------------------------------

def test_starttls_delivers_only_over_an_encrypted_session(tmp_path, certificate, trusted, start_server):
    # The server refuses any message before STARTTLS, so a delivery proves the session was encrypted.
    port, mailbox = start_server(tls_context=server_context(certificate), require_starttls=True)
    delivered, notification = send_one(tmp_path, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port),
                                       SMTP_SECURITY="starttls")
    assert delivered == 1 and notification["status"] == "sent"
    [(encrypted, _)] = mailbox.delivered
    assert encrypted


def test_implicit_tls_delivers_encrypted(tmp_path, certificate, trusted, start_server):
    port, mailbox = start_server(ssl_context=server_context(certificate))
    delivered, notification = send_one(tmp_path, SMTP_HOST="localhost", SMTP_PORT=str(port), SMTP_SECURITY="tls")
    assert delivered == 1 and notification["status"] == "sent"
    [(encrypted, _)] = mailbox.delivered
    assert encrypted


def test_a_server_without_starttls_gets_nothing_and_the_reason_is_kept(tmp_path, start_server):
    port, mailbox = start_server()  # offers no STARTTLS
    delivered, notification = send_one(tmp_path, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port),
                                       SMTP_SECURITY="starttls")
    assert delivered == 0 and mailbox.delivered == []  # never a fall-back to plain text
    assert (notification["status"], notification["attempts"]) == ("pending", 1)  # an operator can fix it
    assert "TlsUnavailable" in notification["last_error"]
    assert "does not offer STARTTLS" in notification["last_error"]


def test_a_certificate_nobody_trusts_is_refused(tmp_path, certificate, start_server, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-authorities.pem"))  # the test's CA not trusted
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    port, mailbox = start_server(tls_context=server_context(certificate), require_starttls=True)
    delivered, notification = send_one(tmp_path, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port),
                                       SMTP_SECURITY="starttls")
    assert delivered == 0 and mailbox.delivered == []
    assert "SSLCertVerificationError" in notification["last_error"]


def test_a_certificate_for_another_name_is_refused(tmp_path, certificate, trusted, start_server):
    # A server on 127.0.0.2 with the certificate that names only 127.0.0.1 and localhost.
    port, mailbox = start_server("127.0.0.2", tls_context=server_context(certificate), require_starttls=True)
    delivered, notification = send_one(tmp_path, SMTP_HOST="127.0.0.2", SMTP_PORT=str(port),
                                       SMTP_SECURITY="starttls")
    assert delivered == 0 and mailbox.delivered == []
    assert "SSLCertVerificationError" in notification["last_error"]


def test_plain_smtp_to_this_machine_still_delivers(tmp_path, start_server):
    port, mailbox = start_server()
    delivered, notification = send_one(tmp_path, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port))
    assert delivered == 1 and notification["status"] == "sent"
    [(encrypted, _)] = mailbox.delivered
    assert not encrypted

