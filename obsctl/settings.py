"""Settings resolved once per invocation: flags first, then ``OBSCTL_*`` variables, then defaults.

Nothing else in obsctl reads ``os.environ``; commands build a ``Settings`` and pass it down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from obsctl.errors import UsageError

DEFAULT_LOG_DIR = "var/log"
DEFAULT_TIMEOUT = 10.0
DEFAULT_LOKI_SELECTOR = '{service=~".+"}'
DEFAULT_MAX_RESPONSE_MB = 256
DEFAULT_LOKI_SINCE = "24h"
DEFAULT_LOKI_MAX_RANGE = "7d"


@dataclass(frozen=True, slots=True)
class Settings:
    loki_url: str | None = None
    prom_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    token: str | None = None
    username: str | None = None
    password: str | None = None
    tenant: str | None = None
    ca_bundle: str | None = None
    verify: bool = True
    loki_selector: str = DEFAULT_LOKI_SELECTOR
    log_dir: str = DEFAULT_LOG_DIR
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_MB * 1024 * 1024
    # How far back trace/errors top search Loki when no window is given (Loki needs one).
    loki_since: str = DEFAULT_LOKI_SINCE
    # ``--map FIELD=KEY`` items, OBSCTL_MAP's first (a later pair for a field wins); read by
    # obsctl.readers.fields.FieldMap.parse where records are read.
    field_map: tuple[str, ...] = ()
    # The longest time range trace asks Loki for: how far a v7 lookup widens around the time in
    # the ID before answering "nothing matched", and what --all searches.
    loki_max_range: str = DEFAULT_LOKI_MAX_RANGE


def _pick(flag: str | None, env: Mapping[str, str], name: str) -> str | None:
    if flag is not None and flag != "":
        return flag
    value = env.get(name)
    return value if value else None


def resolve(
    *,
    loki_url: str | None = None,
    prom_url: str | None = None,
    timeout: float | None = None,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    tenant: str | None = None,
    ca_bundle: str | None = None,
    insecure: bool | None = None,
    loki_selector: str | None = None,
    loki_since: str | None = None,
    field_map: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings of one invocation; ``env`` defaults to the process environment."""
    env = os.environ if env is None else env
    raw_timeout = str(timeout) if timeout is not None else env.get("OBSCTL_TIMEOUT")
    resolved_timeout = DEFAULT_TIMEOUT
    if raw_timeout:
        try:
            resolved_timeout = float(raw_timeout)
        except ValueError:
            raise UsageError(
                f"invalid timeout {raw_timeout!r}", hint="give seconds, for example --timeout 5"
            ) from None
        if not resolved_timeout > 0:
            raise UsageError(f"invalid timeout {raw_timeout!r}", hint="the timeout must be > 0")
    raw_cap = env.get("OBSCTL_MAX_RESPONSE_MB") or str(DEFAULT_MAX_RESPONSE_MB)
    try:
        max_response_bytes = int(float(raw_cap) * 1024 * 1024)
    except ValueError:
        max_response_bytes = 0
    if max_response_bytes <= 0:
        raise UsageError(
            f"invalid OBSCTL_MAX_RESPONSE_MB {raw_cap!r}", hint="give a size in MiB, for example 64"
        )
    raw_insecure = env.get("OBSCTL_INSECURE", "")
    verify = not (
        insecure if insecure is not None else raw_insecure.lower() in {"1", "true", "yes"}
    )
    return Settings(
        loki_url=_pick(loki_url, env, "OBSCTL_LOKI_URL"),
        prom_url=_pick(prom_url, env, "OBSCTL_PROMETHEUS_URL"),
        timeout=resolved_timeout,
        token=_pick(token, env, "OBSCTL_TOKEN"),
        username=_pick(username, env, "OBSCTL_USERNAME"),
        password=_pick(password, env, "OBSCTL_PASSWORD"),
        tenant=_pick(tenant, env, "OBSCTL_TENANT"),
        ca_bundle=_pick(ca_bundle, env, "OBSCTL_CA_BUNDLE"),
        verify=verify,
        loki_selector=_pick(loki_selector, env, "OBSCTL_LOKI_SELECTOR") or DEFAULT_LOKI_SELECTOR,
        log_dir=env.get("OBSCTL_LOG_DIR") or DEFAULT_LOG_DIR,
        max_response_bytes=max_response_bytes,
        loki_since=_pick(loki_since, env, "OBSCTL_LOKI_SINCE") or DEFAULT_LOKI_SINCE,
        field_map=(*([env["OBSCTL_MAP"]] if env.get("OBSCTL_MAP") else []), *(field_map or ())),
        loki_max_range=env.get("OBSCTL_LOKI_MAX_RANGE") or DEFAULT_LOKI_MAX_RANGE,
    )
