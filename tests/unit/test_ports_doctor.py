"""nb.doctor() with the two ports: it names the ZeroMQ endpoint the main port gave, and
when the main port answers but ZeroMQ does not, says so and how to fix it."""

from __future__ import annotations

import labkit
from labkit.errors import NoBrokersAvailable
from labkit.nb.doctor_broker import broker_result
from labkit.nb.doctor_report import FAIL, OK


def test_the_broker_line_names_the_zeromq_endpoint():
    info = {"broker": "labkit", "version": labkit.__version__, "zmq_address": "localhost:9192"}
    result = broker_result(["localhost:9092"], 1, info_fn=lambda s, t: info)
    assert result.status == OK
    assert "answers at localhost:9092 (ZeroMQ at localhost:9192)" in result.detail


def test_a_zeromq_port_out_of_reach_is_named_with_the_fix():
    def unreachable(servers, timeout):
        raise NoBrokersAvailable(
            "no labkit broker answered at localhost:9092 within 2.0 s. Tried: localhost:9092 "
            "answered labkit's bootstrap request (ZeroMQ at localhost:9192), but "
            "localhost:9192 refused the connection (nothing listens there)."
        )

    result = broker_result(["localhost:9092"], 1, info_fn=unreachable, compose=False)
    assert result.status == FAIL
    assert "its ZeroMQ port localhost:9192 does not" in result.detail
    assert "publish both" in result.fix
    assert "--advertised-listeners" in result.fix
