"""Loaded at start-up by a Python process whose PYTHONPATH begins with this folder: every
outbound connection or name lookup for anything but loopback is refused and written to the file
named by NETGUARD_LOG, so a test can assert the process never tried to leave 127.0.0.1.
(The runpod SDK's production loop probes 8.8.8.8:53 unless its system checks are skipped.)"""

import ipaddress
import os
import sys
import traceback

_LOG = os.environ.get("NETGUARD_LOG")


def _loopback(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None:
        return True  # a passive lookup (binding a server)
    host = str(host).strip("[]")
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # any other name would be a DNS question


def _refuse(event: str, target) -> None:
    if _LOG:
        stack = "".join(traceback.format_stack(limit=12)[:-2])
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {event} {target!r}\n{stack}\n")
    raise PermissionError(f"netguard: {event} to {target!r} refused (tests stay on loopback)")


def _hook(event: str, args) -> None:
    if event in ("socket.connect", "socket.sendto"):
        address = args[1] if event == "socket.connect" else args[-1]
        if isinstance(address, tuple) and not _loopback(address[0]):
            _refuse(event, address)
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        if not _loopback(args[0]):
            _refuse(event, args[0])


sys.addaudithook(_hook)
