"""The WSGI app: `prunehook serve` (gunicorn `webhook.wsgi:app`); wsgi.py in a clone."""

import sys

from webhook import create_app
from webhook.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    print(error, file=sys.stderr)
    # gunicorn's WORKER_BOOT_ERROR: the master stops instead of rebooting the worker for ever
    # (gunicorn's settings refuse before forking; this covers a change between the two)
    sys.exit(3)
