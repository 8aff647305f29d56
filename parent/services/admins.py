"""Administrators: passwords, login with throttling, bearer tokens."""

from __future__ import annotations

import math
import secrets
from datetime import timedelta

import bcrypt
from sqlalchemy import func

from shared import errors as codes

from ..auth import settings
from ..clock import now
from ..crypto import cipher
from ..errors import ApiError
from ..extensions import db
from ..models import Admin, AdminToken, LoginFailure

MAX_PASSWORD_BYTES = 72  # bcrypt ignores (and bcrypt 5 refuses) anything longer
MIN_PASSWORD_LENGTH = 8
# Compared against when the username is unknown, so both cases cost one bcrypt check.
_DUMMY_HASH = bcrypt.hashpw(b"werss-cascade-dummy", bcrypt.gensalt(rounds=4))


class PasswordPolicyError(ValueError):
    """The password is too short or too long for bcrypt."""


def hash_password(password: str, rounds: int) -> str:
    encoded = password.encode("utf-8")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise PasswordPolicyError(f"the password must be at most {MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds=rounds)).decode("ascii")


def _check_password(password: str, password_hash: bytes) -> bool:
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_PASSWORD_BYTES:
        bcrypt.checkpw(b"x", _DUMMY_HASH)
        return False
    return bcrypt.checkpw(encoded, password_hash)


def create_admin(username: str, password: str) -> Admin:
    """Create an administrator (flushes; the caller commits)."""
    admin = Admin(username=username, password_hash=hash_password(password, settings().bcrypt_rounds))
    db.session.add(admin)
    db.session.flush()
    return admin


def set_password(admin: Admin, password: str) -> None:
    """Change a password and revoke every token issued under the old one."""
    admin.password_hash = hash_password(password, settings().bcrypt_rounds)
    db.session.execute(
        db.update(AdminToken)
        .where(AdminToken.admin_id == admin.id, AdminToken.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    db.session.flush()


def count_admins() -> int:
    return db.session.execute(db.select(func.count()).select_from(Admin)).scalar_one()


def _throttle_keys(username: str, client_ip: str | None) -> list[str]:
    keys = [f"user:{username.strip().lower()}"]
    if client_ip:
        keys.append(f"ip:{client_ip}")
    return keys


def _check_throttle(keys: list[str]) -> None:
    cfg = settings()
    moment = now()
    window_start = moment - timedelta(seconds=cfg.login_window_seconds)
    limits = {"user": cfg.login_max_failures, "ip": cfg.login_max_failures * 4}
    for key in keys:
        limit = limits[key.split(":", 1)[0]]
        recent = db.session.execute(
            db.select(LoginFailure.failed_at)
            .where(LoginFailure.throttle_key == key, LoginFailure.failed_at > window_start)
            .order_by(LoginFailure.failed_at.desc())
            .limit(limit)
        ).scalars().all()
        if len(recent) >= limit:
            # Locked until the oldest of the last `limit` failures leaves the window.
            unlock_at = recent[-1] + timedelta(seconds=cfg.login_window_seconds)
            retry_after = max(1, math.ceil((unlock_at - moment).total_seconds()))
            raise ApiError(
                codes.TOO_MANY_ATTEMPTS,
                f"Too many failed logins; try again in {retry_after} seconds.",
                details={"retry_after": retry_after},
                headers={"Retry-After": str(retry_after)},
            )


def login(username: str, password: str, client_ip: str | None) -> tuple[str, int]:
    """Check a password and issue a bearer token; commits the token or the failure.

    :raises ApiError: 401 invalid_login, 429 too_many_attempts.
    """
    keys = _throttle_keys(username, client_ip)
    _check_throttle(keys)
    admin = db.session.execute(
        db.select(Admin).where(Admin.username == username.strip())
    ).scalar_one_or_none()
    stored = admin.password_hash.encode("ascii") if admin else _DUMMY_HASH
    if not _check_password(password, stored) or admin is None:
        moment = now()
        db.session.add_all(LoginFailure(throttle_key=key, failed_at=moment) for key in keys)
        # A failed login must still count, even though the request fails.
        db.session.commit()
        raise ApiError(codes.INVALID_LOGIN)

    moment = now()
    ttl = settings().admin_token_ttl
    token = secrets.token_urlsafe(32)
    db.session.add(
        AdminToken(
            admin_id=admin.id, token_hash=cipher().token_digest(token), created_at=moment,
            expires_at=moment + timedelta(seconds=ttl),
        )
    )
    admin.last_login_at = moment
    db.session.execute(db.delete(LoginFailure).where(LoginFailure.throttle_key == keys[0]))
    db.session.commit()
    return token, ttl


def revoke_token(token: AdminToken) -> None:
    token.revoked_at = now()
    db.session.flush()


def prune_tokens_and_failures(window_seconds: int) -> None:
    moment = now()
    db.session.execute(db.delete(AdminToken).where(AdminToken.expires_at < moment - timedelta(days=1)))
    db.session.execute(
        db.delete(LoginFailure).where(LoginFailure.failed_at < moment - timedelta(seconds=window_seconds))
    )
