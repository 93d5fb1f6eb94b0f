"""The local supervisor and child environments, with real (tiny) processes."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from components.local import process
from components.local.supervisor import next_backoff

# A child that records its pid and waits; SIGHUP is written down so forwarding is visible.
CHILD = """
import os, signal, sys, time, pathlib
out = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGHUP, lambda *_: out.with_suffix('.hup').write_text(str(os.getpid())))
with out.open('a') as fh:
    fh.write(f"{os.getpid()}\\n")
while True:
    time.sleep(0.05)
"""


def _wait(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.fixture()
def supervised(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    status = tmp_path / "child.status.json"
    targets = tmp_path / "targets" / "child.json"
    argv = process.supervised([sys.executable, str(script), str(tmp_path / "pids")], "child", status, targets)
    proc = process.start(argv, tmp_path / "child.log", env=process.child_env())
    yield proc, tmp_path, status, targets
    process.stop_started(proc, timeout=5)


def test_a_killed_child_is_restarted_counted_and_logged(supervised):
    proc, tmp, status, _ = supervised
    first = _wait(lambda: _pids(tmp / "pids"))[0]
    os.kill(first, signal.SIGKILL)
    second = _wait(lambda: _pids(tmp / "pids")[1:])[0]
    assert second != first
    state = _wait(lambda: (s := process.read_status(status)) and s["restarts"] == 1 and s["pid"] == second and s)
    assert (state["state"], state["last_exit_code"], state["supervisor_pid"]) == ("running", -9, proc.pid)
    assert oct(status.stat().st_mode & 0o777) == "0o600"
    log = [json.loads(line) for line in (tmp / "child.log").read_text().splitlines() if line.startswith("{")]
    assert [e["event"] for e in log] == ["child_exited", "child_restarted"]
    assert log[0]["exit_code"] == -9 and log[1]["restarts"] == 1
    assert oct((tmp / "child.log").stat().st_mode & 0o777) == "0o600"


def test_restart_count_is_a_prometheus_metric_announced_for_file_sd(supervised):
    _, tmp, _, targets = supervised
    first = _wait(lambda: _pids(tmp / "pids"))[0]
    announced = _wait(lambda: targets.exists() and json.loads(targets.read_text()))
    assert announced[0]["labels"] == {"process": "child"}
    url = f"http://{announced[0]['targets'][0]}/metrics"
    assert url.startswith("http://127.0.0.1:")
    os.kill(first, signal.SIGKILL)
    _wait(lambda: _pids(tmp / "pids")[1:])
    text = urllib.request.urlopen(url, timeout=5).read().decode()  # noqa: S310 - loopback
    assert 'shipway_process_restarts_total{process="child"} 1' in text


def test_sighup_reaches_the_child_and_sigterm_stops_both_without_a_restart(supervised):
    proc, tmp, status, _ = supervised
    child = _wait(lambda: _pids(tmp / "pids"))[0]
    os.kill(proc.pid, signal.SIGHUP)  # what the endpoint provider does for a hot swap
    assert _wait(lambda: (tmp / "pids.hup").exists() and (tmp / "pids.hup").read_text()) == str(child)
    assert process.read_status(status)["restarts"] == 0
    process.stop(proc.pid, "supervisor.py", timeout=5)
    assert proc.wait(5) == 0
    assert not process.is_ours(child, "child.py")
    assert _pids(tmp / "pids") == [child]
    assert process.read_status(status)["state"] == "stopped"


def test_leftover_child_of_a_sigkilled_supervisor_is_stopped_by_group_and_marker(supervised):
    proc, tmp, _, _ = supervised
    child = _wait(lambda: _pids(tmp / "pids"))[0]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    assert process.is_ours(child, "child.py")  # still holding whatever it listened on
    process.stop_leftovers(proc.pid, "child.py")
    _wait(lambda: not process.is_ours(child, "child.py"))


@pytest.mark.parametrize(("current", "ran_for", "expected"), [
    (0.5, 0.1, 1.0),     # crash right away: double
    (16.0, 1.0, 30.0),   # capped
    (30.0, 1.0, 30.0),
    (30.0, 61.0, 0.5),   # ran long enough: start over
])
def test_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run(current, ran_for, expected):
    assert next_backoff(current, ran_for, initial=0.5, maximum=30.0, stable_after=60.0) == expected


def test_child_env_is_minimal_and_never_carries_pulumi_variables():
    source = {"PATH": "/bin", "HOME": "/root", "PULUMI_CONFIG_PASSPHRASE": "hunter2",
              "PULUMI_BACKEND_URL": "file:///x", "AWS_SECRET_ACCESS_KEY": "k", "LANG": "C.UTF-8"}
    assert process.child_env({"MLFLOW_X": "1"}, source=source) == {
        "PATH": "/bin", "HOME": "/root", "LANG": "C.UTF-8", "MLFLOW_X": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}  # no usage reports to MLflow's vendor


def test_child_env_refuses_an_explicit_pulumi_variable():
    with pytest.raises(ValueError, match=r"^extra: PULUMI_ACCESS_TOKEN must not reach a platform process"):
        process.child_env({"PULUMI_ACCESS_TOKEN": "x"}, source={})


def test_started_process_sees_only_the_minimal_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "hunter2")
    proc = process.start([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "p.log")
    try:
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        names = {item.split(b"=", 1)[0].decode() for item in environ if item}
        telemetry_off = {"MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}
        assert names - telemetry_off <= set(process.INHERITED_ENV)
        assert b"MLFLOW_DISABLE_TELEMETRY=true" in environ and b"DO_NOT_TRACK=true" in environ
        assert b"hunter2" not in b"".join(environ)
    finally:
        process.stop_started(proc, timeout=5)


def test_workers_a_crashed_child_forked_are_cleared_before_the_restart(tmp_path):
    # The child forks a worker (as mlflow forks uvicorn) and is then killed; the worker must
    # not survive to hold the port against the restarted child.
    script = tmp_path / "forker.py"
    script.write_text(
        "import os, sys, time, pathlib\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    pathlib.Path(sys.argv[1]).open('a').write(f'worker {os.getpid()}\\n')\n"
        "    time.sleep(600)\n"
        "pathlib.Path(sys.argv[1]).open('a').write(f'parent {os.getpid()}\\n')\n"
        "time.sleep(600)\n")
    out = tmp_path / "pids"
    argv = process.supervised([sys.executable, str(script), str(out)], "forker", tmp_path / "s.json")
    proc = process.start(argv, tmp_path / "log")
    try:
        first = _wait(lambda: out.exists() and len(out.read_text().split("\n")) >= 3 and out.read_text())
        roles = dict(line.split() for line in first.splitlines())
        os.kill(int(roles["parent"]), signal.SIGKILL)
        _wait(lambda: len(out.read_text().splitlines()) >= 4)
        _wait(lambda: not process.is_ours(int(roles["worker"]), "forker.py"))
    finally:
        process.stop_started(proc, timeout=5)


def test_port_holders_name_the_process_that_listens():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        holders = process.port_holders(sock.getsockname()[1])
    assert len(holders) == 1 and holders[0].startswith(f"pid {os.getpid()} pgid {os.getpgid(0)}: ")
