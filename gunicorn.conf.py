"""gunicorn's settings in a clone (`gunicorn -c gunicorn.conf.py wsgi:app`, the Procfile):
the shipped ones, webhook/gunicorn_settings.py, which `prunehook serve` runs with too."""

import sys
from pathlib import Path

_CLONE = Path(__file__).resolve().parent
sys.path.insert(0, str(_CLONE))  # the clone's own package, installed or not
_SHIPPED = _CLONE / "webhook" / "gunicorn_settings.py"
# run as gunicorn runs a config file: afresh at each start and reload (HUP)
exec(compile(_SHIPPED.read_text(), _SHIPPED, "exec"))  # noqa: S102
