"""nb.doctor / `labkit doctor`: the advice (pure) and the checks over real sockets.

The checks against a running broker are in tests/integration/test_nb_demo_notebook.py.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys

import pytest

import labkit
from labkit.errors import NoBrokersAvailable
from labkit.nb import doctor_broker as broker
from labkit.nb import doctor_checks as d
from labkit.nb.doctor_broker import Probe, unreachable_fix
from labkit.nb.doctor_report import FAIL, OK, SKIP, WARN, Report, Result
from labkit.testing.broker import free_port


def fix(host, port=9092, resolves=True, tcp="refused", compose=False, env_set=False):
    return unreachable_fix(host, port, Probe(resolves, tcp), in_compose=compose, env_set=env_set)


# -- advice -------------------------------------------------------------------------


def test_nothing_listening_says_start_the_broker():
    what, todo = fix("localhost")
    assert "no broker is running at localhost:9092" in what
    assert "`labkit broker`" in todo
    assert "docker-compose up" in todo


def test_inside_compose_localhost_means_use_broker_9092():
    what, todo = fix("localhost", compose=True)
    assert "inside this container" in what
    assert "broker:9092" in todo
    assert "LABKIT_BOOTSTRAP=broker:9092" in todo


def test_inside_compose_broker_down_says_how_to_start_and_inspect_it():
    _, todo = fix("broker", compose=True)
    assert "docker-compose up -d broker" in todo
    assert "docker-compose logs broker" in todo


def test_broker_name_outside_docker_means_use_localhost():
    what, todo = fix("broker", resolves=False)
    assert "does not resolve" in what
    assert "localhost:9092" in todo
    assert "unset LABKIT_BOOTSTRAP" in todo


def test_unknown_host_name_says_check_the_spelling():
    _, todo = fix("brokr.example", resolves=False)
    assert "spelling" in todo


def test_port_taken_by_another_program():
    what, todo = fix("localhost", tcp="open", env_set=True)
    assert "not a labkit broker" in what
    assert "labkit broker --port 9093" in todo
    assert "change LABKIT_BOOTSTRAP=localhost:9093" in todo
    assert "lsof -i :9092" in todo
    assert "netstat -ano" in todo


def test_timeout_mentions_firewall():
    what, todo = fix("10.1.2.3", tcp="timeout")
    assert "timed out" in what
    assert "firewall" in todo


def test_python_version():
    assert d.python_result((3, 11, 4)).status == OK
    assert d.python_result((3, 12, 0)).detail == "3.12.0"
    old = d.python_result((3, 9, 18))
    assert old.status == FAIL
    assert "3.11" in old.fix


def test_split_address():
    assert broker.split_address("localhost:9092") == ("localhost", 9092)
    assert broker.split_address("broker") == ("broker", 9092)
    assert broker.split_address("[::1]:9093") == ("::1", 9093)
    with pytest.raises(ValueError, match="'port'"):
        broker.split_address("host:port")


def test_packages_missing_says_how_to_install():
    r = d.packages_result(find=lambda m: m != "ipywidgets", version=lambda p: "1.0")
    assert r.status == FAIL
    assert "ipywidgets" in r.detail
    assert "pip install -e '.[lab]'" in r.fix
    ok = d.packages_result(find=lambda m: True, version=lambda p: "9.9")
    assert ok.status == OK
    assert "jupyterlab 9.9" in ok.detail


# -- report formatting ----------------------------------------------------------------


def _report():
    return Report(
        [
            Result("Python", OK, "3.11.7"),
            Result("broker", FAIL, "no broker", "Start it: `labkit broker`.\nOr docker."),
            Result("round trip", SKIP, "skipped"),
            Result("versions", WARN, "differ", "update both"),
        ]
    )


def test_report_lines_symbols_and_fixes():
    text = _report().format()
    lines = text.splitlines()
    assert lines[0] == "✔ Python: 3.11.7"
    assert lines[1] == "✘ broker: no broker"
    assert lines[2] == "    → Start it: `labkit broker`."
    assert lines[3] == "      Or docker."
    assert lines[4] == "– round trip: skipped"
    assert lines[5] == "! versions: differ"
    assert lines[6] == "    → update both"
    assert lines[-1].startswith("1 problem found")
    assert not _report().ok
    assert _report()["Python"].ok
    assert repr(_report()) == "<doctor: 3 ok, 1 failed>"


def test_ascii_console_gets_ascii_symbols():
    text = _report().format(ascii_only=True)
    assert text.isascii()
    assert "FAIL broker: no broker" in text
    assert "-> Start it" in text
    stream = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")
    assert not d.can_print(stream, "✔")
    assert d.can_print(io.StringIO(), "✔")


def test_all_passed_line():
    assert Report([Result("Python", OK, "3.11")]).format().endswith("all checks passed")


# -- checks over real sockets (no broker) -----------------------------------------


def test_probe_sees_refused_open_and_unresolvable():
    port = free_port()
    assert broker.probe_address("127.0.0.1", port) == Probe(True, "refused")
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        assert broker.probe_address("127.0.0.1", srv.getsockname()[1]) == Probe(True, "open")
    assert broker.probe_address("no-such-host.invalid", 9092).resolves is False


def test_broker_check_nothing_listening_real_client():
    port = free_port()
    r = broker.broker_result([f"127.0.0.1:{port}"], 0.5, compose=False)
    assert r.status == FAIL
    assert f"no broker is running at 127.0.0.1:{port}" in r.detail
    assert "labkit broker" in r.fix


def test_broker_check_port_held_by_another_program():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        r = broker.broker_result([f"127.0.0.1:{port}"], 0.5, compose=False)
    assert r.status == FAIL
    assert "not a labkit broker" in r.detail


def test_broker_check_reads_name_and_version():
    info = {"broker": "labkit", "version": labkit.__version__}
    assert broker.broker_result(["h:1"], 1, info_fn=lambda s, t: info).status == OK
    other = {"broker": "labkit", "version": "0.0.1"}
    r = broker.broker_result(["h:1"], 1, info_fn=lambda s, t: other)
    assert r.status == WARN
    assert "git pull" in r.fix
    assert broker.broker_result(["h:1"], 1, info_fn=lambda s, t: {"broker": "kafka"}).status == FAIL


def test_broker_check_never_raises():
    def boom(servers, timeout):
        raise NoBrokersAvailable("nope")

    r = broker.broker_result(["127.0.0.1:1"], 0.1, info_fn=boom, compose=False)
    assert r.status == FAIL
    bad = broker.broker_result(["localhost:notaport"], 0.1, info_fn=boom, compose=False)
    assert bad.status == FAIL
    assert "host:port" in bad.fix


def test_doctor_without_broker_skips_round_trip_and_prints_fixes():
    out = io.StringIO()
    report = d.doctor(f"127.0.0.1:{free_port()}", timeout_s=0.5, file=out)
    assert not report.ok
    assert report["round trip"].status == SKIP
    assert report["Python"].status == OK
    text = out.getvalue()
    assert "✘ broker:" in text
    assert "→" in text


def test_cli_doctor_exit_code_and_output():
    port = free_port()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "labkit",
            "doctor",
            "--bootstrap-server",
            f"127.0.0.1:{port}",
            "--timeout",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONIOENCODING": "utf-8", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "broker:" in proc.stdout
    assert "labkit broker" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_kafka_cluster_that_is_not_labkit_is_reported_ok_with_what_it_is():
    info = {"broker": "Kafka", "version": "4.1", "cluster_id": "abc", "brokers": 3}
    r = broker.broker_result(["k1:9092", "k2:9092"], 1, info_fn=lambda s, t: info)
    assert r.status == OK
    assert r.detail == (
        "a Kafka cluster (not labkit) answers at k1:9092,k2:9092: 3 brokers, cluster id abc, "
        "API of Kafka 4.1+; the notebooks use kafka-python's clients there"
    )


def test_kafka_pythons_connection_errors_get_the_same_advice_as_labkits():
    import kafka.errors

    from labkit.nb._connect import explain

    # what kafka-python 3 raises when the cluster went away after the lab found it
    text = explain(kafka.errors.KafkaTimeoutError("Unable to bootstrap from k1:9092"))
    assert text.startswith("cannot reach the broker at ")
    assert "nb.doctor()" in text
    # a Kafka error's own text, its name said once
    assert (
        explain(kafka.errors.TopicAlreadyExistsError("exists"))
        == "[Error 36] TopicAlreadyExistsError: exists"
    )
