"""Starts the action server: rasa-sdk's app, on loopback, answering only the Rasa server.

rasa-sdk binds 0.0.0.0 and has no authentication, so anyone who reached port 5055 could run
`action_submit_booking` with invented details or list the actions. Here every request but
`/health` must carry `Authorization: Bearer <ACTION_SERVER_TOKEN>` (the Rasa server sends it:
endpoints.yml), and the server listens on ACTION_HOST, 127.0.0.1 unless set.

    python -m actions.server            (scripts/services.py starts it this way)
"""
import hmac
import logging
import os
import sys
from typing import Mapping, Optional, Text

from rasa_sdk import utils
from rasa_sdk.endpoint import create_app
from sanic import Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

from clinic_core.clinic import ClinicConfigError, load_clinic
from clinic_core.settings import CLINIC_FILE, SETTINGS_ERROR_EXIT, SettingsError, load_settings

MIN_TOKEN_LENGTH = 32
OPEN_PATHS = {"/health"}  # readiness checks carry no secret


class ActionServerSettingsError(ValueError):
    pass


def action_server_token(environ: Mapping[str, str] = os.environ) -> Text:
    token = environ.get("ACTION_SERVER_TOKEN", "").strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise ActionServerSettingsError(
            f"ACTION_SERVER_TOKEN must be set to a random secret of {MIN_TOKEN_LENGTH} characters or more "
            "(the Rasa server sends it in endpoints.yml; `make run` makes one)")
    return token


def require_token(app: Sanic, token: Text) -> None:
    """Refuses, with 401, every request that does not carry the shared secret."""
    expected = f"Bearer {token}".encode()

    @app.middleware("request")
    async def check_token(request: Request) -> Optional[HTTPResponse]:
        if request.path in OPEN_PATHS:
            return None
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return response.json({"error": "unauthorized"}, status=401)
        return None


def create_action_server(token: Text) -> Sanic:
    app = create_app("actions", cors_origins=None)  # called by the Rasa server, never a browser
    require_token(app, token)
    return app


def main() -> None:
    utils.configure_colored_logging(os.environ.get("LOG_LEVEL", "INFO"))
    try:
        token = action_server_token()
        load_settings()  # checked once here; the actions read them again when they run
        load_clinic(CLINIC_FILE)
    except (ActionServerSettingsError, SettingsError, ClinicConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(SETTINGS_ERROR_EXIT)
    host = os.environ.get("ACTION_HOST", "127.0.0.1")
    port = int(os.environ.get("ACTION_PORT", "5055"))
    logging.getLogger(__name__).info("Action server on http://%s:%s (token required)", host, port)
    create_action_server(token).run(host, port, workers=1, access_log=False)


if __name__ == "__main__":
    main()
