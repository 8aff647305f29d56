"""`werss-parent`: serve, migrate, and manage admins and nodes from a shell."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from typing import NoReturn
from pathlib import Path

import click

from .config import ConfigError

EXIT_CONFIG = 2
# Where `werss-parent init` (and so `make up`) keeps the secret key it generates.
DEFAULT_SECRET_KEY_FILE = "data/secret_key"


def _fail(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    click.echo(f"werss-parent: {message}", err=True)
    sys.exit(code)


def _app():
    from . import create_app

    try:
        return create_app()
    except ConfigError as exc:
        if not _use_generated_secret_key():
            _fail(str(exc))
    try:
        return create_app()
    except ConfigError as exc:
        _fail(str(exc))


def _use_generated_secret_key() -> bool:
    """With no key configured, use the one `werss-parent init` wrote under data/, so the
    commands README and `make up` print work as printed from the repository root."""
    if os.environ.get("WERSS_SECRET_KEY") or os.environ.get("WERSS_SECRET_KEY_FILE"):
        return False
    if not Path(DEFAULT_SECRET_KEY_FILE).is_file():
        return False
    os.environ["WERSS_SECRET_KEY_FILE"] = DEFAULT_SECRET_KEY_FILE
    return True


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="werss-cascade", prog_name="werss-parent",
                      message="%(prog)s %(version)s")
def cli():
    """WeRSS Cascade parent. Configuration: WERSS_CONFIG, WERSS_DATABASE_URL, WERSS_SECRET_KEY."""


@cli.group()
def db():
    """Database schema migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision):
    """Create or migrate the database schema."""
    from flask_migrate import upgrade

    app = _app()
    with app.app_context():
        upgrade(revision=revision)
        click.echo(f"database at {_current_revision(app)} ({_safe_url(app)})")


def _safe_url(app) -> str:
    from sqlalchemy.engine import make_url

    return make_url(app.config["SQLALCHEMY_DATABASE_URI"]).render_as_string(hide_password=True)


def _current_revision(app) -> str | None:
    from alembic.migration import MigrationContext

    from .extensions import db as database

    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from . import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        _fail(f"no migrations found in {MIGRATIONS_DIR}", 1)
    return head


def _read_password(password: str | None, prompt: bool = True) -> str:
    if password:
        return password
    if os.environ.get("WERSS_ADMIN_PASSWORD"):
        return os.environ["WERSS_ADMIN_PASSWORD"]
    if prompt and sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    _fail("no password: pass --password, set WERSS_ADMIN_PASSWORD, or run in a terminal")


@cli.command("create-admin")
@click.option("--username", required=True)
@click.option("--password", default=None, help="Prompted for when omitted (or WERSS_ADMIN_PASSWORD).")
def create_admin(username, password):
    """Create an administrator, or reset an existing one's password."""
    from .extensions import db as database
    from .models import Admin
    from .services import admins

    app = _app()
    with app.app_context():
        _require_schema(app)
        secret = _read_password(password)
        try:
            existing = database.session.execute(
                database.select(Admin).where(Admin.username == username)).scalar_one_or_none()
            if existing:
                admins.set_password(existing, secret)
                action = "password reset for"
            else:
                admins.create_admin(username, secret)
                action = "created admin"
        except admins.PasswordPolicyError as exc:
            _fail(str(exc))
        database.session.commit()
        click.echo(f"{action} {username!r}")


def ensure_first_admin(app, username: str = "admin") -> str | None:
    """Create the first admin if there is none; return a generated password to show once."""
    from .extensions import db as database
    from .services import admins

    with app.app_context():
        if admins.count_admins():
            return None
        password = os.environ.get("WERSS_ADMIN_PASSWORD")
        generated = None
        if not password:
            generated = password = secrets.token_urlsafe(12)
        try:
            admins.create_admin(username, password)
        except admins.PasswordPolicyError as exc:
            _fail(f"WERSS_ADMIN_PASSWORD: {exc}")
        database.session.commit()
        return generated


def _require_schema(app) -> None:
    with app.app_context():
        current, head = _current_revision(app), _head_revision()
    if current != head:
        _fail(
            f"the database schema is at {current or 'nothing'}, this version needs {head}: "
            "run `werss-parent db upgrade`"
        )


@cli.command("create-node")
@click.option("--name", required=True)
@click.option("--type", "node_type", type=click.Choice(["child", "parent"]), default="child",
              show_default=True)
@click.option("--description", default="")
@click.option("--credentials", is_flag=True, help="Also generate AK/SK and print them once.")
@click.option("--if-missing", is_flag=True, help="Do nothing if a node with this name exists.")
def create_node(name, node_type, description, credentials, if_missing):
    """Register a node (optionally with credentials)."""
    from .errors import ApiError
    from .extensions import db as database
    from .models import Node
    from .services import nodes

    app = _app()
    with app.app_context():
        _require_schema(app)
        existing = database.session.execute(
            database.select(Node).where(Node.name_key == name)).scalar_one_or_none()
        if existing and if_missing:
            click.echo(f"node {name!r} exists: {existing.id}")
            return
        try:
            node = nodes.create_node({"name": name, "description": description,
                                      "node_type": 1 if node_type == "child" else 0})
            click.echo(f"node_id: {node.id}")
            if credentials:
                _, api_key, api_secret = nodes.issue_credentials(node.id)
                click.echo(f"api_key: {api_key}\napi_secret: {api_secret}")
                click.echo("(the secret is shown only now: store it in the child's configuration)")
            database.session.commit()
        except ApiError as exc:
            _fail(exc.message, 1)


@cli.command("rotate-credentials")
@click.argument("node_id")
def rotate_credentials(node_id):
    """Issue a new AK/SK for a node; the old pair stops working at once."""
    from .errors import ApiError
    from .extensions import db as database
    from .services import nodes

    app = _app()
    with app.app_context():
        _require_schema(app)
        try:
            node, api_key, api_secret = nodes.issue_credentials(node_id)
        except ApiError as exc:
            _fail(exc.message, 1)
        database.session.commit()
        click.echo(f"node_id: {node.id}\napi_key: {api_key}\napi_secret: {api_secret}")
        click.echo("(the secret is shown only now)")


@cli.command("list-nodes")
def list_nodes():
    """Print every node with its status."""
    from .api.dumps import NodeAdminSchema
    from .clock import now
    from .services import nodes

    app = _app()
    with app.app_context():
        _require_schema(app)
        rows, _ = nodes.list_nodes({"limit": 10_000, "offset": 0})
        moment = now()
        click.echo(f"{'node_id':36}  {'type':6}  {'status':8}  {'api_key':34}  name")
        for node in rows:
            data = NodeAdminSchema(moment=moment).dump(node)
            click.echo(
                f"{node.id:36}  {'parent' if node.node_type == 0 else 'child':6}  "
                f"{data['status']:8}  {node.api_key or '-':34}  {node.name}"
            )


@cli.command("init")
@click.option("--secret-key-file", default=DEFAULT_SECRET_KEY_FILE, show_default=True)
def init(secret_key_file):
    """First start on this machine: secret key file, schema, first admin (make up uses it)."""
    from flask_migrate import upgrade

    if not (os.environ.get("WERSS_SECRET_KEY") or os.environ.get("WERSS_SECRET_KEY_FILE")):
        path = Path(secret_key_file)
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
            click.echo(f"generated secret key in {path} (mode 0600; keep it, back it up)")
        os.environ["WERSS_SECRET_KEY_FILE"] = str(path)
    app = _app()
    with app.app_context():
        upgrade()
    generated = ensure_first_admin(app)
    if generated:
        click.echo("created admin 'admin' with password (shown once): " + generated)


@cli.command("serve")
@click.option("--bind", default=None, help="HOST:PORT [127.0.0.1:$PORT or 8001]")
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--threads", type=int, default=8, show_default=True,
              help="Threads per worker (claims answer at once; a WeChat search holds one up to 10 s).")
def serve(bind, workers, threads):
    """Run the parent under gunicorn."""
    app = _app()
    _require_schema(app)
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Read by prometheus_client when the workers first import it (after this).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="werss-metrics-")
    generated = ensure_first_admin(app)
    if generated:
        click.echo("created admin 'admin' with password (shown once): " + generated)
    settings = app.config["WERSS_SETTINGS"]
    from .extensions import db as database

    with app.app_context():
        database.engine.dispose()  # never share connections with forked workers
    from .gunicorn_app import BindError, check_bind, run_gunicorn
    from .logs import gunicorn_log_config

    address = bind or f"127.0.0.1:{settings.port}"
    try:
        check_bind(address)
    except BindError as exc:
        _fail(str(exc), 1)
    run_gunicorn(address, workers, threads, gunicorn_log_config(settings))


def main():
    from sqlalchemy.exc import DBAPIError

    try:
        cli(prog_name="werss-parent")
    except DBAPIError as exc:
        # One line instead of a driver traceback: which database, and why.
        _fail(f"cannot use the database {_configured_url()}: {_reason(exc)}", 1)


def _configured_url() -> str:
    from sqlalchemy.engine import make_url

    from .config import load_settings

    try:
        url = load_settings().database_url
    except ConfigError:
        return "(unreadable configuration)"
    return make_url(url).render_as_string(hide_password=True)


def _reason(exc) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
