"""WSGI entry point for running gunicorn yourself: ``gunicorn 'parent.wsgi:app'``.

`werss-parent serve` is the supported way; this module starts the same housekeeping
thread per worker (do not use gunicorn's --preload with it: threads do not survive fork).
"""

from . import create_app
from .services.maintenance import start_background_maintenance

app = create_app()
start_background_maintenance(app)
