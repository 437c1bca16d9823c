"""The WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

import sys

from webhook import create_app
from webhook.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    print(error, file=sys.stderr)
    sys.exit(2)
