"""Errors cross the socket as status codes and come back as the same ephemerd errors."""

from __future__ import annotations

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from ephemerd._errors import (
    ConfigError,
    ControlError,
    Cordoned,
    EphemerdError,
    ForgeUnavailable,
    JobNotFound,
    SandboxNotFound,
)
from ephemerd.control._status_map import error_from_grpc, error_to_grpc, status_for


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (JobNotFound("job github/1 not found"), Status.NOT_FOUND),
        (SandboxNotFound("gone"), Status.NOT_FOUND),
        (Cordoned("cordoned"), Status.FAILED_PRECONDITION),
        (ConfigError("bad key"), Status.INVALID_ARGUMENT),
        (ControlError("ambiguous"), Status.INVALID_ARGUMENT),
        (ForgeUnavailable("503"), Status.UNAVAILABLE),
        (EphemerdError("other"), Status.UNKNOWN),
    ],
)
def test_server_side_codes(error: EphemerdError, status: Status) -> None:
    assert status_for(error) is status
    assert error_to_grpc(error).message == str(error)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (Status.NOT_FOUND, JobNotFound),
        (Status.FAILED_PRECONDITION, Cordoned),
        (Status.INVALID_ARGUMENT, ControlError),
        (Status.INTERNAL, ControlError),
    ],
)
def test_client_side_classes(status: Status, cls: type[EphemerdError]) -> None:
    error = error_from_grpc(GRPCError(status, "the daemon's words"))
    assert type(error) is cls
    assert str(error) == "the daemon's words"


def test_client_side_messages_stay_one_line() -> None:
    error = error_from_grpc(GRPCError(Status.UNKNOWN, "first line\nsecond line"))
    assert str(error) == "first line"
    assert "does not support" in str(error_from_grpc(GRPCError(Status.UNIMPLEMENTED, "x")))
    assert str(error_from_grpc(GRPCError(Status.INTERNAL))) == "internal"
