"""The registry remembers its choice per request for operations whose backends all declare pure checks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from spikelib.kernels import (BackendUnavailableError, backend_calls, forget_backend_choices, register_backend,
                              reset_backend_calls, select_backend)


@dataclass(frozen=True)
class _Request:
    size: int


def _probe_backends(op: str, pure: bool):
    asked = []

    def check_fast(request):
        asked.append(request.size)
        return None if request.size >= 10 else f"size {request.size} < 10"

    register_backend(op, "fast", check=check_fast, priority=10, pure_check=pure)(lambda: "fast")
    register_backend(op, "plain", check=lambda request: None, priority=0, pure_check=pure)(lambda: "plain")
    return asked


def test_pure_operations_ask_the_checks_once_per_request_and_count_every_dispatch():
    asked = _probe_backends("probe_pure_op", pure=True)
    reset_backend_calls()
    for _ in range(3):
        assert select_backend("probe_pure_op", "auto", _Request(12)).name == "fast"
        assert select_backend("probe_pure_op", "auto", _Request(3)).name == "plain"
    assert asked == [12, 3]  # each request's checks ran once
    assert backend_calls("probe_pure_op") == {"fast": 3, "plain": 3}  # every dispatch is still counted
    forget_backend_choices()
    select_backend("probe_pure_op", "auto", _Request(12))
    assert asked == [12, 3, 12]


def test_a_new_backend_makes_the_registry_choose_again():
    asked = _probe_backends("probe_new_backend_op", pure=True)
    assert select_backend("probe_new_backend_op", "auto", _Request(20)).name == "fast"
    register_backend("probe_new_backend_op", "faster", check=lambda request: None, priority=20,
                     pure_check=True)(lambda: "faster")
    assert select_backend("probe_new_backend_op", "auto", _Request(20)).name == "faster"
    assert asked == [20]


def test_one_impure_check_makes_every_dispatch_ask_again():
    asked = _probe_backends("probe_impure_op", pure=True)
    register_backend("probe_impure_op", "moody", check=lambda request: "never", priority=30)(lambda: "moody")
    for _ in range(3):
        assert select_backend("probe_impure_op", "auto", _Request(15)).name == "fast"
    assert asked == [15, 15, 15]


def test_an_explicit_backend_that_cannot_run_fails_every_time():
    asked = _probe_backends("probe_explicit_op", pure=True)
    for _ in range(2):
        with pytest.raises(BackendUnavailableError, match="size 4 < 10"):
            select_backend("probe_explicit_op", "fast", _Request(4))
    assert asked == [4, 4]
    assert select_backend("probe_explicit_op", "fast", _Request(40)).name == "fast"
    assert select_backend("probe_explicit_op", "fast", _Request(40)).name == "fast"
    assert asked == [4, 4, 40]
