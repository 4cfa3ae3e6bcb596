"""The demo clinic website with the chat widget (`make run`: http://localhost:8080/).

Serves the pages in web/demo/ (filled in with the clinic's details from clinic.yml) and the
built widget from build/web/widget/ (`make widget`). Every response carries a strict
Content-Security-Policy: scripts, styles and images only from this server, connections only
to this server and the assistant, no fonts, frames, plugins or third parties.

    python scripts/demo_site.py --port 8080 --assistant-url http://localhost:5005
"""
import argparse
import html
import sys
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clinic_core.clinic import Clinic, load_clinic  # noqa: E402
from clinic_core.settings import CLINIC_FILE, PROJECT_ROOT, SETTINGS_ERROR_EXIT  # noqa: E402

PAGES = PROJECT_ROOT / "web" / "demo"
WIDGET_BUILD = PROJECT_ROOT / "build" / "web" / "widget"
PAGE_NAMES = {"/": "index.html", "/index.html": "index.html", "/visit.html": "visit.html"}
STATIC = {
    "/demo.css": (PAGES / "demo.css", "text/css; charset=utf-8"),
    "/favicon.svg": (PAGES / "favicon.svg", "image/svg+xml"),
    "/widget/clinic-chat.js": (WIDGET_BUILD / "clinic-chat.js", "text/javascript; charset=utf-8"),
    "/widget/clinic-chat.css": (WIDGET_BUILD / "clinic-chat.css", "text/css; charset=utf-8"),
    "/widget/clinic-chat.js.map": (WIDGET_BUILD / "clinic-chat.js.map", "application/json"),
}
# The widget's colours on the demo page (any #rrggbb; text colour is chosen for contrast).
PRIMARY_COLOR = "#0b5c6b"
GREETING = ("Hi! I can answer general questions about ketamine therapy: how it works, what a session "
            "is like, side effects. What would you like to know?")


def websocket_origin(url: str) -> str:
    parts = urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}"


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(assistant_url: str) -> str:
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        f"connect-src 'self' {origin(assistant_url)} {websocket_origin(assistant_url)}",
        "font-src 'none'",
        "object-src 'none'",
        "frame-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def widget_tag(assistant_url: str, clinic: Clinic) -> str:
    """The one script tag a clinic puts on its pages."""
    attributes = {
        "src": "/widget/clinic-chat.js",
        "data-server-url": assistant_url,
        "data-clinic-name": clinic.name,
        "data-clinic-phone": clinic.phone,
        "data-primary-color": PRIMARY_COLOR,
        "data-greeting": GREETING,
    }
    rendered = " ".join(f'{name}="{html.escape(value)}"' for name, value in attributes.items())
    return f"<script {rendered} defer></script>"


def render_page(name: str, assistant_url: str) -> bytes:
    clinic = load_clinic(CLINIC_FILE)  # read on every request, like the action server does
    values = {key: html.escape(value) for key, value in clinic.slots().items()}
    values["widget"] = widget_tag(assistant_url, clinic)
    return Template((PAGES / name).read_text(encoding="utf-8")).substitute(values).encode("utf-8")


class DemoSiteHandler(BaseHTTPRequestHandler):
    def version_string(self) -> str:
        return "demo-site"

    def __init__(self, *args, assistant_url: str, **kwargs):
        self.assistant_url = assistant_url
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = urlsplit(self.path).path
        if path == "/healthz":
            self.reply(HTTPStatus.OK, b"ok", "text/plain; charset=utf-8")
        elif path in PAGE_NAMES:
            self.reply(HTTPStatus.OK, render_page(PAGE_NAMES[path], self.assistant_url), "text/html; charset=utf-8")
        elif path in STATIC and STATIC[path][0].is_file():
            file, content_type = STATIC[path]
            self.reply(HTTPStatus.OK, file.read_bytes(), content_type, cache="no-cache")
        else:
            self.reply(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def reply(self, status: HTTPStatus, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("Content-Security-Policy", content_security_policy(self.assistant_url))
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        sys.stdout.write(f"{self.address_string()} {format % args}\n")
        sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--assistant-url", default="http://localhost:5005",
                        help="the Rasa server the widget connects to (socket.io)")
    args = parser.parse_args()
    if not (WIDGET_BUILD / "clinic-chat.js").is_file():
        print(f"The widget is not built ({WIDGET_BUILD}): run `make widget`.", file=sys.stderr)
        return SETTINGS_ERROR_EXIT
    handler = partial(DemoSiteHandler, assistant_url=args.assistant_url.rstrip("/"))
    server = ThreadingHTTPServer((args.host, args.port), handler)
    print(f"Demo clinic page: http://{args.host}:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
