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
import ipaddress
import itertools
import os
import re
import shlex
import sys
from pathlib import Path

__all__ = ["WILDCARDS", "launcher", "main", "rewrite"]

#: Addresses HAProxy reads as "every interface" (an empty address is one too; so is any
#: unspecified IP address, such as ``0:0::0``).
WILDCARDS = frozenset({"", "*", "0.0.0.0", "::", "[::]"})
#: The ``bind`` keyword, then whitespace of any kind.
_BIND = re.compile(r"^(?P<indent>\s*)bind(?P<space>\s+)(?P<address>\S+)(?P<rest>.*)$")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _is_wildcard(address: str) -> bool | None:
    """``True`` for every interface, ``False`` for one address, ``None`` when not readable."""
    if address in WILDCARDS:
        return True
    literal = address[1:-1] if address.startswith("[") and address.endswith("]") else address
    try:
        return ipaddress.ip_address(literal).is_unspecified
    except ValueError:
        pass
    labels = address.split(".")
    # RFC 1123 host name; an all-numeric last label is an address in a form the resolver
    # reads loosely ("0" is 0.0.0.0), so it is not accepted as a name.
    if (
        len(address) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    ):
        return False
    return None


def rewrite(config: str, host: str) -> str:
    """``config`` with each wildcard ``bind ADDRESS:PORT`` bound to ``host`` instead.

    Args:
        config: HAProxy configuration text.
        host: The address to bind (an IPv4 or IPv6 literal, or a host name).

    Raises:
        ValueError: A ``bind`` line whose first word is not one ``ADDRESS:PORT`` with an IP
            address, a host name or a wildcard: an address family prefix (``ipv4@``,
            ``unix@``...), a list (``A:1,B:2``), a port range, anything else. Left as it is,
            it might listen on every interface.
    """
    lines = []
    for line in config.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        found = _BIND.match(body)
        if found is None:
            if body.strip() == "bind":
                raise ValueError(f"HAProxy bind line not understood: {body.strip()!r}")
            lines.append(line)
            continue
        address, _, port = found["address"].rpartition(":")
        wildcard = _is_wildcard(address)
        if (
            "@" in found["address"]
            or "," in found["address"]
            or not port.isdigit()
            or not 0 < int(port) <= 65535
            or wildcard is None
        ):
            raise ValueError(f"HAProxy bind line not understood: {body.strip()!r}")
        if wildcard:
            # HAProxy reads the port after the last colon, IPv6 literals included.
            body = f"{found['indent']}bind{found['space']}{host}:{port}{found['rest']}"
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

    Raises:
        PermissionError: The file written cannot be executed (a ``noexec`` mount).
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
    if not os.access(path, os.X_OK):
        # A data folder mounted noexec: Ray would only report HAProxy failing to start.
        raise PermissionError(
            f"{path} cannot be executed (is the data folder's file system mounted noexec?)"
        )
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
