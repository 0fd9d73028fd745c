"""The service's error answers: one body shape (:class:`ErrorBody`) for every error it
gives itself, :class:`ApiError` to give one from a route, and :func:`responses` to
document them in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """Every error the service answers itself."""

    error: str
    detail: list[dict[str, Any]] | None = None


ERROR_TEXT = {
    400: "Malformed request (the reason names the field)",
    401: "No API token, or one that is not valid (unknown, revoked, expired); send "
         "`Authorization: Bearer vgl_…`",
    403: "The token's role may not do this",
    404: "No such resource (or not one of the caller's tenant)",
    409: "The resource's state does not allow this (the message says which)",
    413: "Request body over the service's limit (service_max_body)",
    422: "A parameter does not validate (the message names it)",
    500: "Internal error (fail closed: never an allowed admission)",
    503: "Not ready (the reasons say why)",
}


class ApiError(Exception):
    """An error answer: its status, its sentence, extra headers."""

    def __init__(self, status: int, message: str, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of the error ``codes``."""
    return {c: {"model": ErrorBody, "description": ERROR_TEXT[c]} for c in codes}
