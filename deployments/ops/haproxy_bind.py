"""Serve's HAProxy, started with its wildcard listeners bound to the platform's host.

Ray Serve writes HAProxy's configuration from a template in which the API frontend binds
``http_options.host`` but the stats page (``bind *:PORT``) and the Prometheus endpoint
(``bind :PORT``) bind every interface; their ports are configurable
(``RAY_SERVE_HAPROXY_STATS_PORT``, ``RAY_SERVE_HAPROXY_METRICS_PORT``), their address is not.
Ray does offer to run another executable in HAProxy's place (``RAY_SERVE_HAPROXY_BINARY_PATH``),
which is what this module is: :func:`main` receives exactly the arguments Serve gives HAProxy
(``-db -f CONFIG ...``), rewrites the wildcard ``bind`` lines of ``CONFIG`` in place to the
host (under the lock Serve writes the file with), and replaces itself with the real HAProxy
(``exec``: the same process id and arguments, which Serve checks, and no process more).
A ``bind`` line it cannot read is refused, so HAProxy never starts listening on every
interface unnoticed.

The alternatives were worse: patching Serve's template inside its actors reaches into Ray's
private modules, and a wildcard listener firewalled afterwards is still a listener.

The file runs as a script with the standard library alone (``python -I -S haproxy_bind.py
HOST HAPROXY ARGS...``): it needs nothing of the project, whose path HAProxy's parent may
not have. :func:`launcher` writes the executable that Serve is pointed at.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import shlex
import sys
from pathlib import Path

__all__ = ["WILDCARDS", "launcher", "main", "rewrite"]

#: Addresses HAProxy reads as "every interface" (an empty address is one too).
WILDCARDS = frozenset({"", "*", "0.0.0.0", "::", "[::]"})
_BIND = re.compile(r"^(?P<indent>\s*)bind\s+(?P<address>\S*?):(?P<port>\d{1,5})(?P<rest>(\s.*)?)$")


def rewrite(config: str, host: str) -> str:
    """``config`` with each wildcard ``bind ADDRESS:PORT`` bound to ``host`` instead.

    Args:
        config: HAProxy configuration text.
        host: The address to bind (an IPv4 or IPv6 literal, or a host name).

    Raises:
        ValueError: A ``bind`` line that names no ``ADDRESS:PORT`` (a UNIX socket or an
            address family prefix this function does not know): left as it is, it might
            listen on every interface.
    """
    lines = []
    for line in config.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        if body.lstrip().startswith("bind "):
            found = _BIND.match(body)
            if found is None:
                raise ValueError(f"HAProxy bind line not understood: {body.strip()!r}")
            if found["address"] in WILDCARDS:
                # HAProxy reads the port after the last colon, IPv6 literals included.
                body = f"{found['indent']}bind {host}:{found['port']}{found['rest']}"
                line = body + line[len(line.rstrip("\r\n")) :]
        lines.append(line)
    return "".join(lines)


def _config_path(args: list[str]) -> str:
    """The file after ``-f`` in HAProxy's arguments."""
    for flag, value in itertools.pairwise(args):
        if flag == "-f":
            return value
    raise ValueError("no -f CONFIG among HAProxy's arguments")


def main(argv: list[str]) -> None:
    """``HOST HAPROXY ARGS...``: rewrite ``-f CONFIG`` for ``HOST``, then exec ``HAPROXY ARGS``."""
    host, binary, *args = argv
    config = _config_path(args)
    # Serve writes the file under this lock; holding it, the file is read and written whole.
    with open(config + ".lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            text = Path(config).read_text()
            bound = rewrite(text, host)
            if bound != text:
                # In place: Serve recognises its HAProxy processes by this path.
                Path(config).write_text(bound)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    os.execv(binary, [binary, *args])


def launcher(path: Path, host: str, haproxy: str) -> Path:
    """Write the executable that Serve runs as HAProxy: this script for ``host`` (mode 0700).

    Args:
        path: Where to write it.
        host: The address every wildcard listener gets.
        haproxy: The real HAProxy binary.
    """
    script = " ".join(
        shlex.quote(part) for part in (sys.executable, "-I", "-S", __file__, host, haproxy)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "w") as out:
        out.write(f'#!/bin/sh\nexec {script} "$@"\n')
    os.replace(temporary, path)
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
