"""The WSGI entry point in a clone: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

from webhook.wsgi import app

__all__ = ["app"]
