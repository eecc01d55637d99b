"""Errors raised by wandb_source. Every message says what to change.

    WandbSourceError
    ├── ConfigurationError     a setting is missing or wrong (entity, projects, base_url, filters)
    ├── AuthenticationError    no API key, or W&B rejected it
    ├── NotFoundError          an entity or project that W&B does not know
    ├── FilterRejectedError    W&B rejected the run filter or order
    └── ServerError            W&B kept failing past the retry budget, or answered garbage
"""

from __future__ import annotations


class WandbSourceError(Exception):
    """Base class for errors of the wandb source."""


class ConfigurationError(WandbSourceError):
    """A setting is missing or invalid."""


class AuthenticationError(WandbSourceError):
    """The API key is missing or W&B rejected it."""


class NotFoundError(WandbSourceError):
    """An entity or project does not exist (or the key cannot see it)."""


class FilterRejectedError(WandbSourceError):
    """W&B rejected the run filter or order."""


class ServerError(WandbSourceError):
    """W&B answered with errors past the retry budget."""
