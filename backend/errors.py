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


class Conflict(ValidationError):
    """Input that clashes with what exists, such as a subdomain another app has (the API
    answers 409); a ValidationError, so forms show it under its field."""


class InvalidTransition(BackendError):
    pass
