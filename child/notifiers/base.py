"""What every notifier implements and raises."""

from __future__ import annotations

from typing import Protocol

from ..collectors.base import CollectedArticle


class NotifyError(Exception):
    """Articles could not be pushed; ``retryable`` says whether trying again may help."""

    retryable: bool = True

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class Notifier(Protocol):
    def push(self, task: dict, feed: dict, articles: list[CollectedArticle]) -> int:
        """Push ``articles`` of ``feed`` as ``task`` says; return how many were pushed.

        :raises NotifyError: when the receiver could not be reached or refused them.
        """
        ...
