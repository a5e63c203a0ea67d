"""Errors that reach a person: each says what happened and what to do next."""


class BackendError(Exception):
    """Base class; `str(error)` is the message to show."""


class NotFound(BackendError):
    pass


class PermissionDenied(BackendError):
    pass


class ValidationError(BackendError):
    """Bad input in one field of a form or request."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class InvalidTransition(BackendError):
    pass
