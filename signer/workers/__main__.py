"""``python -m signer.workers FD INDEX``: a signing worker, started by the front process.

The front passes one end of a socket pair as file descriptor FD and then sends the config as
the first message; PKCS#11 is loaded only here, in the started process (ADR 0001).
"""

from __future__ import annotations

import socket
import sys

from signer.logs import configure
from signer.workers import wire


def main(argv: list[str]) -> int:
    fd, index = int(argv[0]), int(argv[1])
    sock = socket.socket(fileno=fd)
    first = wire.receive(sock)
    if first is None or first[0] != "config":
        return 2
    # The front's format and level; the lines go to the stderr this process inherited from it.
    configure(first[1].log, "worker", index)
    from signer.workers.process import run

    return run(sock, first[1], index)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
