"""obsctl on other stacks' log shapes against grep, and ``obsctl slow`` against ``grep -c``.

The schema-v1 file of ``bench_obsctl`` (``tests/bench/loggen.py``) is rewritten record by record
into each shape with that shape's exact bytes (the log-shapes reference: structlog's and
python-json-logger's ``json.dumps`` spacing, ECS and OTLP/JSON compact, OTLP ten records per
``resourceLogs`` line, Loguru's ``{"text", "record"}``), so every file holds the same requests.
For each shape: ``obsctl trace ID`` against ``grep -F ID`` (budget 1.5x) and ``obsctl errors top``
against ``grep -c`` of that shape's error bytes (budget 3x); on the schema-v1 file,
``obsctl slow`` against ``grep -c '"request finished"'`` (budget 3x). The same questions on the
schema-v1 file are timed in the same rounds, as the reference. Whole processes are timed
with hyperfine, page cache warm, in rounds that alternate the order of the commands; medians.

Environment: ``OBS_BENCH_SHAPES_MB`` (size of the v1 file, default 256; the shaped files differ
in size by their bytes per record), ``OBS_BENCH_ROUNDS`` (default 3), ``OBS_BENCH_DIR``,
``OBS_BENCH_SHAPES`` (comma-separated shapes to time, e.g. ``v1,otlp``; default all: only those
files are generated, with the v1 file they are rewritten from). The table
also gives each command's CPU time (user + system, children included): on a shared machine the
wall time of a two-process scan depends on what else runs, its CPU time much less.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from tests.bench.bench_obsctl import OBSCTL, ROOT
from tests.bench.loggen import generate


def _dumps_spaced(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def _local_asctime(ts: str) -> str:
    moment = datetime.fromisoformat(ts).astimezone()  # logging's asctime: local, no zone
    return moment.strftime("%Y-%m-%d %H:%M:%S") + f",{moment.microsecond // 1000:03d}"


_BASE = ("ts", "level", "correlation_id", "message", "service", "logger", "function", "line")


def _extras(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in _BASE and k != "exception"}
    if "internal_code" in out:
        out["error_code"] = out.pop("internal_code")
    return out


def _traceback(doc: dict[str, Any]) -> str | None:
    exc = doc.get("exception")
    if not isinstance(exc, dict):
        return None
    tb = exc.get("traceback") or "Traceback (most recent call last):\n"
    return f"{tb.rstrip()}\n{exc.get('type')}: {exc.get('value')}"


def _structlog(doc: dict[str, Any]) -> bytes:
    out: dict[str, Any] = {**_extras(doc), "event": doc["message"]}
    if "correlation_id" in doc:
        out["request_id"] = doc["correlation_id"]
    out["level"] = doc["level"].lower()
    out["timestamp"] = doc["ts"]
    tb = _traceback(doc)
    if tb is not None:
        out["exception"] = tb
    return _dumps_spaced(out)


def _pjl(doc: dict[str, Any]) -> bytes:
    out: dict[str, Any] = {
        "asctime": _local_asctime(doc["ts"]),
        "levelname": doc["level"],
        "name": doc.get("logger", ""),
        "message": doc["message"],
    }
    tb = _traceback(doc)
    if tb is not None:
        out["exc_info"] = tb
    if "correlation_id" in doc:
        out["request_id"] = doc["correlation_id"]
    out.update(_extras(doc))
    return _dumps_spaced(out)


def _ecs(doc: dict[str, Any]) -> bytes:
    rest: dict[str, Any] = {"ecs.version": "1.6.0", **_extras(doc)}
    if "correlation_id" in doc:
        rest["http"] = {"request": {"id": doc["correlation_id"]}}
    rest["log"] = {"logger": doc.get("logger", ""), "original": doc["message"]}
    rest["service"] = {"name": doc.get("service", "")}
    exc = doc.get("exception")
    if isinstance(exc, dict):
        rest["error"] = {
            "message": exc.get("value"),
            "stack_trace": exc.get("traceback") or "",
            "type": exc.get("type"),
        }
    head = {"@timestamp": doc["ts"][:23] + "Z", "log.level": doc["level"].lower()}
    head["message"] = doc["message"]
    return orjson.dumps({**head, **dict(sorted(rest.items()))})


def _loguru(doc: dict[str, Any]) -> bytes:
    extra = _extras(doc)
    if "correlation_id" in doc:
        extra = {"request_id": doc["correlation_id"], **extra}
    exc = doc.get("exception")
    moment = datetime.fromisoformat(doc["ts"])
    record = {
        "elapsed": {"repr": "0:00:01.000000", "seconds": 1.0},
        "exception": (
            {"type": exc.get("type"), "value": exc.get("value"), "traceback": True}
            if isinstance(exc, dict)
            else None
        ),
        "extra": extra,
        "file": {"name": "app.py", "path": "/app/app.py"},
        "function": doc.get("function", ""),
        "level": {"icon": "", "name": doc["level"], "no": 40 if doc["level"] == "ERROR" else 20},
        "line": doc.get("line", 0),
        "message": doc["message"],
        "module": "app",
        "name": doc.get("logger", ""),
        "process": {"id": 1, "name": "MainProcess"},
        "thread": {"id": 1, "name": "MainThread"},
        "time": {"repr": moment.isoformat(), "timestamp": moment.timestamp()},
    }
    text = f"{doc['ts']} | {doc['level']:<8} | {doc.get('logger', '')} - {doc['message']}\n"
    return _dumps_spaced({"text": text, "record": record})


def _otlp_value(value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value if isinstance(value, str) else json.dumps(value)}


_SEVERITY = {"DEBUG": (5, "DEBUG"), "INFO": (9, "INFO"), "WARNING": (13, "WARN")}
_SEVERITY |= {"ERROR": (17, "ERROR"), "CRITICAL": (21, "FATAL")}


def _otlp_record(doc: dict[str, Any]) -> dict[str, Any]:
    attrs = {}
    if "correlation_id" in doc:
        attrs["request_id"] = doc["correlation_id"]
    attrs.update(_extras(doc))
    exc = doc.get("exception")
    if isinstance(exc, dict):
        attrs["exception.type"] = exc.get("type")
        attrs["exception.message"] = exc.get("value")
        attrs["exception.stacktrace"] = _traceback(doc)
    nanos = str(int(datetime.fromisoformat(doc["ts"]).timestamp() * 1e6) * 1000)
    number, text = _SEVERITY.get(doc["level"], (9, "INFO"))
    return {
        "timeUnixNano": nanos,
        "observedTimeUnixNano": nanos,
        "severityNumber": number,
        "severityText": text,
        "body": {"stringValue": doc["message"]},
        "attributes": [{"key": k, "value": _otlp_value(v)} for k, v in attrs.items()],
    }


def _otlp_lines(docs: Iterator[dict[str, Any]], per_line: int = 10) -> Iterator[bytes]:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]}
    batch: list[dict[str, Any]] = []
    for doc in docs:
        batch.append(_otlp_record(doc))
        if len(batch) == per_line:
            yield _otlp_line(resource, batch)
            batch = []
    if batch:
        yield _otlp_line(resource, batch)


def _otlp_line(resource: dict[str, Any], batch: list[dict[str, Any]]) -> bytes:
    scope = {"scope": {"name": "shop"}, "logRecords": batch}
    return orjson.dumps({"resourceLogs": [{"resource": resource, "scopeLogs": [scope]}]})


PER_RECORD: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "structlog": _structlog,
    "python-json-logger": _pjl,
    "ecs": _ecs,
    "loguru": _loguru,
}
ALL_SHAPES = ["v1", *PER_RECORD, "otlp"]
#: What ``grep -c`` counts as the error lines of each shape (the bytes obsctl pre-filters on).
ERROR_BYTES = {
    "v1": '"level":"ERROR"',
    "structlog": '"level": "error"',
    "python-json-logger": '"levelname": "ERROR"',
    "ecs": '"log.level":"error"',
    "loguru": '"name": "ERROR"',
    "otlp": '"severityNumber":17',
}


#: Commands run as an installed obsctl runs: with its bytecode. A development shell may set
#: PYTHONDONTWRITEBYTECODE, and then every start compiled obsctl's modules again (~65 ms of CPU
#: per run, more than the whole scan of a 256 MiB file).
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _hyperfine(command: str, *, warmup: int) -> tuple[float, float]:
    """One timed run: (wall seconds, CPU seconds of the process and its children)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        subprocess.run(
            [
                *("hyperfine", "--style", "none", "--output", "pipe", "-i"),
                *("-w", str(warmup), "-r", "1", "--export-json", report.name, command),
            ],
            check=True,
            capture_output=True,
            env=_ENV,
        )
        result = json.loads(Path(report.name).read_text())["results"][0]
    return float(result["times"][0]), float(result["user"]) + float(result["system"])


def _prepare(mb: int, shapes: list[str]) -> tuple[dict[str, Path], str]:
    """The v1 file (always: the others are rewritten from it) and the files of ``shapes``."""
    directory = Path(os.environ.get("OBS_BENCH_DIR") or ROOT / "var" / "bench")
    directory.mkdir(parents=True, exist_ok=True)
    v1 = directory / f"shapes-{mb}mb.v1.jsonl"
    meta = directory / f"shapes-{mb}mb.json"
    if not (v1.exists() and meta.exists()):
        print(f"generating {v1} ({mb} MiB)…", flush=True)
        info = generate(str(v1), mb << 20)
        meta.write_text(json.dumps({"id": info.middle_error_id}))
    paths = {"v1": v1}
    for shape in [x for x in shapes if x != "v1"]:
        path = directory / f"shapes-{mb}mb.{shape}.jsonl"
        paths[shape] = path
        if path.exists() and path.stat().st_mtime >= v1.stat().st_mtime:
            continue
        print(f"rewriting as {shape}…", flush=True)
        started = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        with v1.open("rb") as src, tmp.open("wb") as dst:
            docs = (orjson.loads(line) for line in src)
            if shape == "otlp":
                for line in _otlp_lines(docs):
                    dst.write(line + b"\n")
            else:
                convert = PER_RECORD[shape]
                for doc in docs:
                    dst.write(convert(doc) + b"\n")
        tmp.rename(path)
        print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    return paths, json.loads(meta.read_text())["id"]


def main() -> None:
    mb = int(os.environ.get("OBS_BENCH_SHAPES_MB", "256"))
    only = os.environ.get("OBS_BENCH_SHAPES", "")  # e.g. "v1,otlp": only these questions
    rounds = int(os.environ.get("OBS_BENCH_ROUNDS", "3"))
    shapes = [x for x in ALL_SHAPES if not only or x in only.split(",")]
    paths, cid = _prepare(mb, shapes)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "obsctl")],
        check=True,
        capture_output=True,
        env=_ENV,
    )
    ob = shlex.quote(OBSCTL)
    cases: list[tuple[str, str, str]] = []  # (question, tool, command)
    for shape in shapes:  # v1: foundation's own, the reference
        f = shlex.quote(str(paths[shape]))
        cases += [
            (f"trace {shape}", "obsctl", f"{ob} trace {cid} {f}"),
            (f"trace {shape}", "grep -F", f"grep -F {cid} {f}"),
            (f"errors {shape}", "obsctl", f"{ob} errors top {f}"),
            (f"errors {shape}", "grep -c", f"grep -c {shlex.quote(ERROR_BYTES[shape])} {f}"),
        ]
    v1 = shlex.quote(str(paths["v1"]))
    cases += [
        ("slow v1", "obsctl", f"{ob} slow {v1}"),
        (
            "slow v1",
            "grep -c",
            f"grep -c {shlex.quote(chr(34) + 'request finished' + chr(34))} {v1}",
        ),
    ]
    if only:
        wanted = set(only.split(","))
        cases = [c for c in cases if c[0].split()[1] in wanted]
    for path in [paths[x] for x in shapes]:
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm
    sizes = ", ".join(f"{k} {paths[k].stat().st_size / 2**20:.0f} MiB" for k in shapes)
    print(f"files: {sizes}; {rounds} rounds; cores {os.cpu_count()}", flush=True)
    times: dict[tuple[str, str], list[float]] = {(q, t): [] for q, t, _ in cases}
    cpu: dict[tuple[str, str], list[float]] = {(q, t): [] for q, t, _ in cases}
    for round_no in range(rounds):
        order = cases if round_no % 2 == 0 else list(reversed(cases))
        for question, tool, command in order:
            wall, used = _hyperfine(command, warmup=1 if round_no == 0 else 0)
            times[(question, tool)].append(wall)
            cpu[(question, tool)].append(used)
    print()
    print(
        f"{'question':<28} {'tool':<8} {'median s':>9} {'min s':>8} {'cpu s':>7} "
        f"{'obsctl / peer':>14}"
    )
    budgets = {"trace": 1.5, "errors": 3.0, "slow": 3.0}
    verdicts = []
    for question, tool, _ in cases:
        median = statistics.median(times[(question, tool)])
        ratio = ""
        if tool != "obsctl":
            ours = statistics.median(times[(question, "obsctl")])
            ours_cpu = statistics.median(cpu[(question, "obsctl")])
            peer_cpu = statistics.median(cpu[(question, tool)])
            ratio = f"{ours / median:.2f}"
            budget = budgets[question.split()[0]]
            verdicts.append(
                f"  {'ok  ' if ours / median <= budget else 'MISS'} {question}: obsctl "
                f"{ours:.3f} s vs {tool} {median:.3f} s ({ours / median:.2f}x, budget {budget}x;"
                f" CPU {ours_cpu:.3f} s vs {peer_cpu:.3f} s)"
            )
        print(
            f"{question:<28} {tool:<8} {median:>9.3f} {min(times[(question, tool)]):>8.3f} "
            f"{statistics.median(cpu[(question, tool)]):>7.3f} {ratio:>14}"
        )
    print()
    print("\n".join(verdicts))
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
