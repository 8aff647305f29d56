"""The browserless QR login, as WeRSS's newer driver does it.

Start the login, fetch the QR image, poll the scan status every 2 s, finish the login and
read the token, the account's name and its avatar. ``on_state`` hears each step
(``waiting_scan`` with the PNG, ``scanned``) so a CLI or the parent can show it.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from .api import WechatApi, WechatError, WechatSession

POLL_INTERVAL = 2.0
QR_LIFETIME = 240.0  # WeChat's login QR codes stop working after a few minutes
CONFIRMED = {1, 3}
SCANNED = {2, 4}


class LoginFailedError(WechatError):
    """The login did not complete (QR expired, aborted, or WeChat refused)."""


def run_login(api: WechatApi, on_state: Callable[..., None], *,
              poll_interval: float = POLL_INTERVAL, qr_lifetime: float = QR_LIFETIME,
              stop: threading.Event | None = None,
              clock: Callable[[], float] = time.time) -> WechatSession:
    """Log in by QR scan and return the new session.

    :raises LoginFailedError: when the QR code expires unscanned or the login is stopped.
    :raises WechatError: when WeChat refuses a step.
    """
    stop = stop or threading.Event()
    login = api.start_login()
    image = api.qr_image(login)
    deadline = clock() + qr_lifetime
    on_state("waiting_scan", qr_png=image, qr_expires_at=deadline)
    scanned = False
    while clock() < deadline:
        if stop.wait(poll_interval):
            raise LoginFailedError("the login was stopped")
        status = api.ask(login)
        if status in CONFIRMED:
            return api.finish_login(login)
        if status in SCANNED and not scanned:
            scanned = True
            on_state("scanned")
    raise LoginFailedError("the QR code expired before it was scanned and confirmed")
