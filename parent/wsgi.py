"""WSGI entry point for gunicorn: ``gunicorn 'parent.wsgi:app'``."""

from . import create_app

app = create_app()
