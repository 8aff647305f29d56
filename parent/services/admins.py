"""Administrators: passwords, login with throttling, bearer tokens."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import timedelta

import bcrypt
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError

from shared import errors as codes

from ..config import settings
from ..clock import now
from ..crypto import cipher
from ..errors import ApiError
from ..extensions import db, rowcount
from ..models import Admin, AdminLoginSource, AdminToken, LoginFailure

MAX_PASSWORD_BYTES = 72  # bcrypt ignores (and bcrypt 5 refuses) anything longer
MIN_PASSWORD_LENGTH = 8
_DUMMY_HASHES: dict[int, bytes] = {}


def _dummy_hash() -> bytes:
    """A hash at the configured cost, checked when the username is unknown, so that an
    unknown user takes as long as a wrong password (no username enumeration)."""
    rounds = settings().bcrypt_rounds
    if rounds not in _DUMMY_HASHES:
        _DUMMY_HASHES[rounds] = bcrypt.hashpw(b"werss-cascade-dummy", bcrypt.gensalt(rounds))
    return _DUMMY_HASHES[rounds]


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
        bcrypt.checkpw(b"x", _dummy_hash())
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


# A username under attack from everywhere takes this many failures per window from all
# addresses together; beyond that only addresses it has logged in from may still try.
GLOBAL_CEILING_FACTOR = 20
KNOWN_SOURCE_DAYS = 90  # an address is remembered this long after its last login


def _throttle_keys(username: str, client_ip: str | None) -> list[str]:
    """Keys counted for one attempt: (username, address), the address, the username.

    Usernames compare exactly, as the admins table does: ``victim`` and ``Victim`` are two
    accounts and do not share a throttle.
    """
    name = username.strip()
    source = client_ip or "unknown"
    return [f"pair:{name}|{source}", f"ip:{source}", f"user:{name}"]


def _is_known_source(username: str, client_ip: str | None) -> bool:
    if not client_ip:
        return False
    found = db.session.execute(
        db.select(AdminLoginSource.id).join(Admin, Admin.id == AdminLoginSource.admin_id)
        .where(Admin.username == username.strip(), AdminLoginSource.source == client_ip)
    ).first()
    return found is not None


def _remember_source(admin_id: int, client_ip: str | None, moment) -> None:
    if not client_ip:
        return
    updated = rowcount(db.session.execute(
        db.update(AdminLoginSource)
        .where(AdminLoginSource.admin_id == admin_id, AdminLoginSource.source == client_ip)
        .values(last_login_at=moment)))
    if not updated:
        try:
            with db.session.begin_nested():
                db.session.add(AdminLoginSource(admin_id=admin_id, source=client_ip,
                                                last_login_at=moment))
        except IntegrityError:
            pass  # a parallel login from the same address remembered it first


def _check_throttle(keys: list[str], allowance: int = 0) -> None:
    """Refuse when a key has more than its limit of recent attempts.

    ``allowance``: how many of the counted rows are the current attempt itself.
    """
    cfg = settings()
    moment = now()
    window_start = moment - timedelta(seconds=cfg.login_window_seconds)
    limits = {"pair": cfg.login_max_failures, "ip": cfg.login_max_failures * 4,
              "user": cfg.login_max_failures * GLOBAL_CEILING_FACTOR}
    for key in keys:
        limit = limits[key.split(":", 1)[0]]
        recent = db.session.execute(
            db.select(LoginFailure.failed_at)
            .where(LoginFailure.throttle_key == key, LoginFailure.failed_at > window_start)
            .order_by(LoginFailure.failed_at.desc(), LoginFailure.id.desc())
            .limit(limit + allowance)
        ).scalars().all()
        if len(recent) >= limit + allowance:
            # Locked until the oldest of the last `limit` failures leaves the window.
            unlock_at = recent[-1] + timedelta(seconds=cfg.login_window_seconds)
            retry_after = max(1, math.ceil((unlock_at - moment).total_seconds()))
            raise ApiError(
                codes.TOO_MANY_ATTEMPTS,
                f"Too many failed logins; try again in {retry_after} seconds.",
                details={"retry_after": retry_after},
                headers={"Retry-After": str(retry_after)},
            )


@dataclass(frozen=True)
class LoginAttempt:
    """One login attempt, recorded before its password is checked."""

    username: str
    client_ip: str | None
    keys: list[str]
    attempt_ids: list[int]


@dataclass(frozen=True)
class LoginCandidate:
    """What checking the password needs, read before the slow hash."""

    admin_id: int | None
    stored_hash: bytes


def record_login_attempt(username: str, client_ip: str | None) -> LoginAttempt:
    """Record the attempt as a failure until it succeeds (flushes; the caller commits it
    at once, so that it stays recorded when the password is wrong)."""
    keys = _throttle_keys(username, client_ip)
    moment = now()
    attempts = [LoginFailure(throttle_key=key, failed_at=moment) for key in keys]
    db.session.add_all(attempts)
    db.session.flush()
    return LoginAttempt(username, client_ip, keys, [attempt.id for attempt in attempts])


def login_candidate(attempt: LoginAttempt) -> LoginCandidate:
    """Check the throttle, counting this attempt, and read what the password is checked against.

    Recording first and counting after means parallel guesses cannot slip in between a
    check and a write.

    :raises ApiError: 429 too_many_attempts.
    """
    # The owner, from an address that has logged in before, is not held by the ceiling a
    # distributed guesser has reached; a guess still meets its own (username, address) limit.
    known = _is_known_source(attempt.username, attempt.client_ip)
    _check_throttle(attempt.keys if not known else attempt.keys[:2], allowance=1)
    admin = db.session.execute(
        db.select(Admin).where(Admin.username == attempt.username.strip())
    ).scalar_one_or_none()
    if admin is None:
        return LoginCandidate(None, _dummy_hash())
    return LoginCandidate(admin.id, admin.password_hash.encode("ascii"))


def complete_login(attempt: LoginAttempt, candidate: LoginCandidate,
                   password: str) -> tuple[str, int]:
    """Check the password (run it outside any transaction: bcrypt is slow) and issue a token.

    :raises ApiError: 401 invalid_login; the attempt stays recorded as a failure.
    """
    if not _check_password(password, candidate.stored_hash) or candidate.admin_id is None:
        raise ApiError(codes.INVALID_LOGIN)
    admin_id = candidate.admin_id
    moment = now()
    ttl = settings().admin_token_ttl
    token = secrets.token_urlsafe(32)
    db.session.add(
        AdminToken(
            admin_id=admin_id, token_hash=cipher().token_digest(token), created_at=moment,
            expires_at=moment + timedelta(seconds=ttl),
        )
    )
    db.session.execute(db.update(Admin).where(Admin.id == admin_id).values(last_login_at=moment))
    _remember_source(admin_id, attempt.client_ip, moment)
    # Only this address's failures are forgiven: the username's global count stays.
    db.session.execute(db.delete(LoginFailure).where(
        (LoginFailure.throttle_key == attempt.keys[0])
        | LoginFailure.id.in_(attempt.attempt_ids)))
    db.session.flush()
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
    db.session.execute(db.delete(AdminLoginSource).where(
        AdminLoginSource.last_login_at < moment - timedelta(days=KNOWN_SOURCE_DAYS)))
