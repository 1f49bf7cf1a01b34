"""How often a retrain runs: spans (30m, 6h, 1d) and the crontab line that runs one on a schedule."""

from __future__ import annotations

import os
import re
import shlex
import sys

from thrifty.errors import ThriftyError


def span_seconds(value: str) -> float:
    """"30m" -> 1800.0; minutes, hours or days."""
    match = re.match(r"^(\d+(?:\.\d+)?)([mhd])$", value.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ThriftyError(f"--every {value!r} is not a span; use minutes, hours or days, e.g. 30m, 6h, 1d")
    return float(match.group(1)) * {"m": 60, "h": 3600, "d": 86400}[match.group(2)]


def cron_schedule(every: str) -> str:
    """A span as cron's five fields; a span cron's calendar cannot keep is an error."""
    minutes = int(round(span_seconds(every) / 60))
    if minutes < 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * *"
    if minutes % 60 == 0 and minutes < 1440 and 24 % (minutes // 60) == 0:
        return f"0 */{minutes // 60} * * *"
    if minutes % 1440 == 0:
        return f"0 0 */{minutes // 1440} * *"
    raise ThriftyError(f"--every {every} does not fit cron's calendar; use a divisor of an hour (30m), of a day "
                       "(6h) or whole days (1d), or run with --every instead of --cron")


def cron_line(every: str, argv: list[str]) -> str:
    """A crontab line running the same thrifty command line (`argv`, without --every/--cron) every SPAN, from this
    folder, its output appended to runs/retrain.log."""
    when = cron_schedule(every)
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--cron" or arg.startswith("--every="):
            continue
        if arg == "--every":
            skip = True
            continue
        kept.append(arg)
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "thrifty", *kept])
    return f"{when} cd {shlex.quote(os.getcwd())} && {command} >> runs/retrain.log 2>&1"
