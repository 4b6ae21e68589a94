"""JSON log lines (contract 1): shape, hostile content, redaction, coercion, stdlib interception,
and durability: SIGTERM mid-burst, several worker processes, broken sinks."""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import pty
import re
import select
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from asgi_correlation_id import correlation_id
from loguru import logger

from foundation import configure_logging
from foundation.logging import DEFAULT_MAX_FIELD_CHARS, REDACTED, current_logging
from tests.foundation import apps
from tests.foundation.conftest import client_for
from tests.foundation.servers import (
    child_env,
    log_lines,
    parse_line,
    read_records,
    run_uvicorn,
    stop,
    wait_until,
)

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
# Raw UTF-8 of characters that must never reach the file unescaped: C1 controls (NEL, CSI...),
# U+2028/2029, bidi embeddings/overrides/isolates, the BOM.
UNSAFE_RAW = re.compile(
    rb"[\x00-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8-\xae]|\xe2\x81[\xa6-\xa9]|\xef\xbb\xbf"
)


def configure(log_dir: Path, **options: Any) -> None:
    options.setdefault("log_stdout", False)
    options.setdefault("compression", None)
    configure_logging(service="svc", log_dir=log_dir, **options)


# -- the line ------------------------------------------------------------------------------------


def test_line_has_the_contract_keys_in_order_with_compact_separators(log_dir: Path) -> None:
    configure(log_dir)
    token = correlation_id.set("c" * 32)
    try:
        logger.error("it failed", internal_code=21101, http_code=404, order_id=7)
        logger.info("request finished", method="GET", path="/x", route="/x", status=200,
                    duration_ms=1.5)  # fmt: skip
    finally:
        correlation_id.reset(token)
    logger.info("outside any request")
    error, access, outside = log_lines(log_dir)
    assert list(parse_line(error)) == [
        "ts", "level", "correlation_id", "message", "service", "logger", "function", "line",
        "internal_code", "http_code", "order_id",
    ]  # fmt: skip
    assert list(parse_line(access))[8:] == ["method", "path", "route", "status", "duration_ms"]
    assert error.startswith(b'{"ts":"') and b'"level":"ERROR","correlation_id":"ccc' in error
    record = parse_line(error)
    assert TS.fullmatch(record["ts"])
    assert (record["service"], record["logger"]) == ("svc", __name__)
    assert record["function"] == "test_line_has_the_contract_keys_in_order_with_compact_separators"
    assert "correlation_id" not in parse_line(outside)


def test_bound_extra_never_overwrites_a_contract_key(log_dir: Path) -> None:
    configure(log_dir)
    logger.info("real message", level_hint=1, service="spoofed", logger="spoofed-too")
    (record,) = read_records(log_dir)
    assert (record["message"], record["service"], record["logger"]) == (
        "real message",
        "svc",
        __name__,
    )
    assert record["extra_service"] == "spoofed"


HOSTILE = {
    "crlf": "line one\r\nfake line two",
    "esc": "\x1b[2J\x1b[31mred",
    "csi": "\x9b31m c1 csi",
    "nel": "next\x85line",
    "line separator": "para\u2028graph\u2029end",
    "bidi": "user\u202etxt.exe\u2066iso\u2069",
    "quotes and braces": '"}{"level":"CRITICAL"} {0} {name}',
    "nul": "before\x00after",
    "bom": "\ufeffbom",
    "100 KB": "A" * 100_000,
}


def test_hostile_content_gives_one_valid_escaped_line_per_record(log_dir: Path) -> None:
    configure(log_dir)
    for name, text in HOSTILE.items():
        # User data goes in as an argument, never as the template (see the next test).
        logger.warning("{}", text, case=name, payload={"nested": text}, items=[text])
    everything = "".join(v for k, v in HOSTILE.items() if k != "100 KB")
    logger.opt(capture=True).warning(
        "{}", everything, case="all", **{f"k{i}": v for i, v in enumerate(HOSTILE.values())}
    )
    data = b"".join(line + b"\n" for line in log_lines(log_dir))
    assert data == (log_dir / "svc.jsonl").read_bytes()
    lines = data.split(b"\n")[:-1]
    assert len(lines) == len(HOSTILE) + 1
    for line in lines:
        assert UNSAFE_RAW.search(line) is None, line[:200]
        assert len(line.decode().splitlines()) == 1  # no Unicode line break survives raw
        record = parse_line(line)
        assert record["level"] == "WARNING"
        assert len(record["message"]) <= DEFAULT_MAX_FIELD_CHARS + 40
    by_case = {r["case"]: r for r in map(parse_line, lines)}
    for name, text in HOSTILE.items():
        record = by_case[name]
        if name == "100 KB":
            assert record["message"].startswith("A" * DEFAULT_MAX_FIELD_CHARS)
            assert record["message"].endswith("[truncated 91808 chars]")
            assert len(record["payload"]["nested"]) < DEFAULT_MAX_FIELD_CHARS + 40
        else:  # escaping is lossless
            assert record["message"] == text
            assert record["payload"] == {"nested": text} and record["items"] == [text]


def test_format_strings_in_user_data_are_kept_literally(log_dir: Path) -> None:
    configure(log_dir)
    logger.info("x", user="{0}{name}")
    logger.info("user said {}", "{0}{name} {!r}")
    logging.getLogger("thirdparty").warning("stdlib %s", "{0}{name}")
    logging.getLogger("thirdparty").warning("{0}{name} %d without args")
    records = read_records(log_dir)
    assert [r["message"] for r in records] == [
        "x",
        "user said {0}{name} {!r}",
        "stdlib {0}{name}",
        "{0}{name} %d without args",
    ]
    assert records[0]["user"] == "{0}{name}"


# -- redaction, caps, coercion ----------------------------------------------------------------


def test_sensitive_extras_are_redacted_nested_too(log_dir: Path) -> None:
    configure(log_dir)
    secrets = {f"SECRET-{i}-{uuid.uuid4().hex[:6]}" for i in range(9)}
    s = sorted(secrets)
    logger.info(
        "login",
        password=s[0],
        api_key=s[1],
        Authorization=s[2],
        **{"X-Api-Key": s[3]},
        access_token=s[4],
        request={"headers": {"Cookie": s[5], "accept": "json"}, "db": {"password": s[6]}},
        attempts=[{"client_secret": s[7]}, {"user": "ann"}],
        user="ann",
    )
    logger.bind(session_token=s[8]).info("bound")
    raw = (log_dir / "svc.jsonl").read_text()
    assert not [secret for secret in secrets if secret in raw]
    first, second = read_records(log_dir)
    assert first["password"] == first["api_key"] == first["Authorization"] == REDACTED
    assert first["request"] == {
        "headers": {"Cookie": REDACTED, "accept": "json"},
        "db": {"password": REDACTED},
    }
    assert first["attempts"] == [{"client_secret": REDACTED}, {"user": "ann"}]
    assert first["user"] == "ann"
    assert second["session_token"] == REDACTED


def test_redaction_list_is_configurable(log_dir: Path) -> None:
    configure(log_dir, redact=("ssn", "password"), max_field_chars=10)
    logger.info("customer", ssn="123-45-6789", password="pw", note="n" * 50)
    (record,) = read_records(log_dir)
    assert record["ssn"] == record["password"] == REDACTED
    assert record["note"].startswith("n" * 10) and "truncated 40 chars" in record["note"]


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")

    def __str__(self) -> str:
        raise RuntimeError("str exploded")


def test_unserializable_extras_are_coerced_and_the_record_kept(
    log_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    configure(log_dir)
    circular: dict[str, Any] = {"name": "loop"}
    circular["self"] = circular
    circular_list: list[Any] = [1]
    circular_list.append(circular_list)
    cases: dict[str, Any] = {
        "circular dict": circular,
        "circular list": circular_list,
        "tuple keys": {(1, 2): "pair", None: "none", 3.5: "float"},
        "broken repr": BrokenRepr(),
        "lone surrogate": "bad \udc80 text",
        "nan": math.nan,
        "inf": [math.inf, -math.inf],
        "bytes": b"\x00\xff raw",
        "set": {1, 2},
        "exception": ValueError("as a value"),
    }
    for name, value in cases.items():
        logger.info("coerce {}", name, case=name, value=value)
    logger.info("surrogate in message \ud800", case="message surrogate")
    records = read_records(log_dir)
    assert [r["case"] for r in records] == [*cases, "message surrogate"]
    by_case = {r["case"]: r for r in records}
    assert by_case["tuple keys"]["value"] == {"(1, 2)": "pair", "None": "none", "3.5": "float"}
    assert by_case["nan"]["value"] == "nan" and by_case["inf"]["value"] == ["inf", "-inf"]
    assert by_case["circular dict"]["value"]["name"] == "loop"
    assert "unrepresentable BrokenRepr" in json.dumps(by_case["broken repr"]["value"])
    assert "bad" in by_case["lone surrogate"]["value"]
    assert sorted(by_case["set"]["value"]) == [1, 2]
    assert capfd.readouterr().err == ""  # nothing was dropped, nothing printed by Loguru


def test_exceptions_are_type_value_traceback_without_local_values(log_dir: Path) -> None:
    configure(log_dir)

    card_number = uuid.uuid4().hex  # a runtime value: it is in no source line

    def charge(card: str) -> None:
        local_secret = f"local-{card}"
        raise ValueError(f"card declined ({len(local_secret)} chars)")

    try:
        charge(card_number)
    except ValueError:
        logger.exception("charge failed")
    (record,) = read_records(log_dir)
    assert record["level"] == "ERROR"
    assert set(record["exception"]) == {"type", "value", "traceback"}
    assert record["exception"]["type"] == "ValueError"
    assert record["exception"]["value"] == "card declined (38 chars)"
    assert 'raise ValueError(f"card declined' in record["exception"]["traceback"]
    assert card_number not in (log_dir / "svc.jsonl").read_text()


# -- stdlib logging ------------------------------------------------------------------------------


def test_stdlib_loggers_are_intercepted_with_their_names(log_dir: Path) -> None:
    # uvicorn installs its own handler before the app is imported: it must not print twice.
    uvicorn_error = logging.getLogger("uvicorn.error")
    own = logging.StreamHandler(sys.stderr)
    uvicorn_error.addHandler(own)
    uvicorn_error.propagate = False
    try:
        configure(log_dir)
        uvicorn_error.info("Started server process [%d]", 42)
        logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET / HTTP/1.1" 200')
        engine = sqlalchemy.create_engine("sqlite://")
        logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 42"))
        engine.dispose()
        try:
            raise ConnectionError("upstream refused")
        except ConnectionError:
            logging.getLogger("thirdparty.client").exception("call failed")
        logging.getLogger("thirdparty.client").debug("below the level")
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
        uvicorn_error.removeHandler(own)
    records = read_records(log_dir)
    by_logger: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_logger.setdefault(record["logger"], []).append(record)
    assert [r["message"] for r in by_logger["uvicorn.error"]] == ["Started server process [42]"]
    assert "uvicorn.access" not in by_logger  # replaced by foundation's access line
    assert any(r["message"] == "SELECT 42" for r in by_logger["sqlalchemy.engine.Engine"])
    (failure,) = by_logger["thirdparty.client"]
    assert failure["level"] == "ERROR"
    assert failure["exception"]["type"] == "ConnectionError"
    assert failure["function"] == "test_stdlib_loggers_are_intercepted_with_their_names"


CHILD_STDOUT = textwrap.dedent(
    """
    from loguru import logger
    from foundation import configure_logging
    configure_logging(service="svc", log_dir=None)
    logger.info("to stdout", answer=42)
    """
)


@pytest.mark.proc
def test_stdout_is_json_when_not_a_terminal(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD_STDOUT],
        env=child_env(),
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
        check=True,
    )
    (line,) = done.stdout.splitlines()
    record = parse_line(line)
    assert (record["message"], record["answer"], record["service"]) == ("to stdout", 42, "svc")
    assert not (tmp_path / "var").exists()  # log_dir=None: no file


@pytest.mark.proc
def test_stdout_is_readable_colour_text_on_a_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD_STDOUT],
            env=child_env(),
            cwd=tmp_path,
            stdout=follower,
            stderr=subprocess.DEVNULL,
        )
        os.close(follower)
        follower = -1
        output = b""
        try:
            while b"to stdout" not in output:
                ready, _, _ = select.select([leader], [], [], 10)
                if not ready:
                    break
                try:
                    chunk = os.read(leader, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
        finally:
            stop(process)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert b"to stdout" in output
    assert not output.lstrip().startswith(b"{")
    assert b"\x1b[" in output  # coloured


# -- durability ----------------------------------------------------------------------------------

CHILD_BURST = textwrap.dedent(
    """
    import sys
    from loguru import logger
    from foundation import configure_logging
    configure_logging(service="burst", log_dir=sys.argv[1], log_stdout=False)
    total, signal_at = int(sys.argv[2]), int(sys.argv[3])
    for i in range(total):
        logger.info("burst record", i=i, padding="p" * 100)
        if i == signal_at:
            print("ready", flush=True)
    print("ready", flush=True)
    import time
    time.sleep(30)
    """
)


@pytest.mark.proc
@pytest.mark.parametrize("when", ["after the burst", "in the middle of the burst"])
def test_sigterm_loses_no_logged_record(tmp_path: Path, when: str) -> None:
    total = 20_000
    signal_at = total if when == "after the burst" else total // 2
    log_dir = tmp_path / "logs"
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD_BURST, str(log_dir), str(total), str(signal_at)],
        env=child_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready and process.stdout.readline() == b"ready\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == -signal.SIGTERM
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()
    indices = [r["i"] for r in read_records(log_dir)]  # every line parses, none is partial
    if when == "after the burst":
        assert indices == list(range(total))
    else:  # whatever was logged before the signal is there, in order, without a gap
        assert len(indices) > signal_at
        assert indices == list(range(len(indices)))


@pytest.mark.proc
def test_several_worker_processes_lose_no_record(tmp_path: Path) -> None:
    """4 x 3,000 records, production defaults (rotation, gz): per-process files, none lost."""
    workers, count = 4, 3_000
    log_dir = tmp_path / "logs"
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=apps.burst, args=(str(log_dir), count)) for _ in range(workers)
    ]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
    pids = {str(p.pid) for p in processes}
    names = [p.name for p in log_dir.iterdir()]
    assert any(n.endswith(".gz") for n in names), "rotation did happen"
    assert all(any(f"burst-{pid}." in n for n in names) for pid in pids), names
    assert not any(n.startswith("burst.") for n in names)
    seen = Counter((r["pid"], r["i"]) for r in read_records(log_dir))
    assert len(seen) == workers * count
    assert set(seen.values()) == {1}


@pytest.mark.proc
def test_uvicorn_workers_write_every_access_line_to_per_process_files(tmp_path: Path) -> None:
    ids = [uuid.uuid4().hex for _ in range(120)]
    with run_uvicorn(tmp_path, workers=2) as server:
        # Both workers must be up before the first request (each binds the shared socket).
        assert wait_until(
            lambda: (
                len([r for r in read_records(server.log_dir) if "startup complete" in r["message"]])
                == 2
            ),
            20.0,
        )
        for cid in ids:  # a new connection each time, so both workers answer some
            with httpx.Client(base_url=server.url, timeout=5.0) as http:
                assert http.get("/ok", headers={"X-Request-ID": cid}).status_code == 200
        log_dir = server.log_dir
    records = read_records(log_dir)
    access = Counter(r["correlation_id"] for r in records if r["message"] == "request finished")
    assert access == Counter(ids)
    names = sorted(p.name for p in log_dir.iterdir())
    assert len(names) == 2 and all(re.fullmatch(r"testapp-\d+\.jsonl", n) for n in names), names
    # SIGTERM drained both workers: their last words are on disk.
    assert sum(r["message"].startswith("Finished server process") for r in records) == 2


class FlakyStream:
    """A stdout that refuses records containing "poison"."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def write(self, text: str) -> None:
        if "poison" in text:
            raise OSError(28, "No space left on device")
        self.written.append(text)

    def flush(self) -> None:
        return

    def isatty(self) -> bool:
        return False


def test_a_failing_sink_drops_only_its_record_and_leaks_nothing(
    log_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    stream = FlakyStream()
    configure(log_dir, log_stdout=True, stdout=stream)
    logger.info("first")
    logger.bind(password="pw-SECRET-1").info("poison pill", card="4111-SECRET")
    logger.info("poison again", token="tok-SECRET-2")
    logger.info("last")
    assert [parse_line(line.encode())["message"] for line in stream.written] == ["first", "last"]
    assert [r["message"] for r in read_records(log_dir)] == [
        "first",
        "poison pill",
        "poison again",
        "last",
    ]
    config = current_logging()
    assert config is not None and config.dropped_records == 2
    err = capfd.readouterr().err
    assert err.count("foundation: cannot write logs to stdout") == 1  # rate-limited
    assert "SECRET" not in err and "poison" not in err


async def test_unwritable_log_directory_does_not_fail_requests(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file where the log directory should be\n")
    app = apps.build_app(
        env={}, log_dir=str(blocker / "logs"), log_stdout=False, log_compression=None
    )
    async with client_for(app) as http:
        assert (await http.get("/ok")).status_code == 200
        assert (await http.get("/items/404")).status_code == 404
        assert (await http.get("/boom")).status_code == 500
        for _ in range(20):
            assert (await http.get("/ok")).status_code == 200
    logger.bind(api_token="tok-SECRET-3").info("still no disk", password="pw-SECRET-4")
    config = current_logging()
    assert config is not None and config.dropped_records >= 2 * 23
    err = capfd.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("foundation:")]
    assert len(warnings) == 1
    assert str(blocker) in warnings[0] and "dropped" in warnings[0]
    assert "SECRET" not in err and "Traceback" not in err


def test_rotation_and_compression_keep_every_record(log_dir: Path) -> None:
    configure(log_dir, rotation="4 KB", compression="gz")
    for i in range(200):
        logger.info("rotating", i=i)
    logger.remove()  # the sink's stop lets the background compression finish
    names = [p.name for p in log_dir.iterdir()]
    assert sum(n.endswith(".gz") for n in names) >= 3
    assert sorted(r["i"] for r in read_records(log_dir)) == list(range(200))
