"""An SMTP sink for the Node interop scripts: `aiosmtpd` on 127.0.0.1, on a port the OS
chooses. Prints `{"port": N}` once it listens, then one JSON line per received message
(`{"to": [...], "text": "<decoded body>"}`), until stdin closes or it is terminated.

The Python scripts run the same sink in-process (see zitadel_client_py.py).
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import sys

from aiosmtpd.controller import Controller


class Printer:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        print(json.dumps({"to": list(envelope.rcpt_tos), "text": message.get_content()}), flush=True)
        return "250 Message accepted for delivery"


def main() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    smtp = Controller(Printer(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        print(json.dumps({"port": port}), flush=True)
        sys.stdin.read()
    finally:
        smtp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
