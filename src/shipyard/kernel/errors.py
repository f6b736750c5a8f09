"""API errors in PocketBase's shape `{"status", "message", "data"}`; raised by core, rendered by api."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data or {}
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "data": self.data}


def bad_request(message: str = "", data: dict[str, Any] | None = None) -> ApiError:
    return ApiError(400, message or "Something went wrong while processing your request.", data)


def not_found(message: str = "") -> ApiError:
    return ApiError(404, message or "The requested resource wasn't found.")


def forbidden(message: str = "") -> ApiError:
    return ApiError(403, message or "You are not allowed to perform this request.")


def unauthorized(message: str = "") -> ApiError:
    return ApiError(401, message or "The request requires valid record authorization token.")


def bad_value() -> ApiError:
    """A value the database engine refuses (NUL characters, numbers out of range)."""
    return bad_request(
        "Invalid value: it contains characters or a range the database cannot store."
    )


def too_slow() -> ApiError:
    """The database cancelled a statement at its time limit (the request's query budget or
    the engine's statement timeout): the server is not broken, the request asked for too
    much (or the database is overloaded)."""
    return ApiError(503, "The request took too long to process; try again or narrow it.")


def busy(retry_after: int = 1) -> ApiError:
    """Every database connection stayed busy for the pool timeout: a transient overload."""
    return ApiError(
        503,
        "The server is too busy to process the request; try again shortly.",
        headers={"Retry-After": str(retry_after)},
    )


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request entity too large (the limit is {limit} bytes).")


class FieldError(Exception):
    """One field's validation failure, with PocketBase's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, Any]:  # a subclass may nest (errors of a list's items)
        return {"code": self.code, "message": self.message}


def validation_failed(message: str, errors: dict[str, FieldError]) -> ApiError:
    return bad_request(message, {name: err.to_dict() for name, err in errors.items()})
