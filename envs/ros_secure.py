"""Transport security for RosArm-v0: verified TLS for ``wss://`` and the rosbridge ``auth`` op (rosauth).

roslibpy 2.1 accepts ``is_secure=True``, but its twisted transport then connects with twisted's bare
``ClientContextFactory``, which verifies neither the certificate chain nor the host name: any server on the path
would be accepted. :func:`open_ros` therefore builds the connection itself with ``optionsForClientTLS`` (the
system's CAs, or a CA file), checks the name or IP in the URL against the certificate, and reports a failed
handshake at once instead of letting roslibpy's reconnecting factory retry until the connect timeout.

rosauth's MAC (``ros_mac_authentication``): the hex SHA-512 of ``secret + client + dest + rand + t + level + end``
with ``t`` and ``end`` in whole seconds; the server accepts it while ``|t - now| < 5 s`` and ``end > now``. A
ROS 1 rosbridge started with ``authenticate:=true`` drops every message until a valid ``auth`` op arrives and closes
the connection on an invalid one. The secret never travels on a command line: it is read from a file
(``--secret-file`` or ``$SYMGYM_ROSBRIDGE_SECRET_FILE``) or the environment (``$SYMGYM_ROSBRIDGE_SECRET``).
"""
from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SECRET_ENV, SECRET_FILE_ENV = "SYMGYM_ROSBRIDGE_SECRET", "SYMGYM_ROSBRIDGE_SECRET_FILE"
#: rosauth's clock tolerance between the client's ``t`` and the server's clock
AUTH_SKEW_S = 5
AUTH_LEVEL = "admin"


@dataclass(frozen=True)
class Security:
    """How to reach a bridge safely: a CA bundle for ``wss://`` (None: the system's CAs) and the rosauth secret
    (None: no ``auth`` op). ``secret`` is kept out of ``repr`` so it never reaches a log or a traceback."""

    ca_file: str | None = None
    secret: str | None = field(default=None, repr=False)
    level: str = AUTH_LEVEL
    session_s: int = 3600


def load_secret(secret_file: str | Path | None = None) -> str | None:
    """The rosauth secret: the first line of ``secret_file`` (or of ``$SYMGYM_ROSBRIDGE_SECRET_FILE``), else
    ``$SYMGYM_ROSBRIDGE_SECRET``, else None (no authentication)."""
    path = secret_file or os.environ.get(SECRET_FILE_ENV)
    if path:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"rosbridge secret file {path} does not exist")
        lines = path.read_text(encoding="utf8").splitlines()
        secret = lines[0].strip() if lines else ""   # rosauth reads the first line only
        where = f"secret file {path}"
    else:
        secret = os.environ.get(SECRET_ENV)
        if secret is None:
            return None
        where = f"${SECRET_ENV}"
    if not secret:
        raise ValueError(f"rosbridge {where} is empty")
    return secret


def rosauth_mac(secret: str, client: str, dest: str, rand: str, t: int, level: str, end: int) -> str:
    return hashlib.sha512(f"{secret}{client}{dest}{rand}{int(t)}{level}{int(end)}".encode()).hexdigest()


def auth_message(secret: str, client: str, dest: str, level: str = AUTH_LEVEL, session_s: int = 3600,
                 now: float | None = None) -> dict:
    """The rosbridge ``auth`` op for a session of ``session_s`` seconds starting now."""
    t = int(time.time() if now is None else now)
    end = t + int(session_s)
    rand = secrets.token_hex(16)
    return {"op": "auth", "mac": rosauth_mac(secret, client, dest, rand, t, level, end), "client": client,
            "dest": dest, "rand": rand, "t": t, "level": level, "end": end}


def check_auth(msg: dict, secret: str, now: float | None = None) -> bool:
    """What rosauth decides for an ``auth`` op (the twin uses it to require authentication)."""
    now = time.time() if now is None else now
    try:
        t, end = int(msg["t"]), int(msg["end"])
        fields = (msg["client"], msg["dest"], msg["rand"], msg["level"], msg["mac"])
    except (KeyError, TypeError, ValueError):
        return False
    if not all(isinstance(f, str) for f in fields) or abs(now - t) >= AUTH_SKEW_S or end <= now:
        return False
    expected = rosauth_mac(secret, msg["client"], msg["dest"], msg["rand"], t, msg["level"], end)
    return secrets.compare_digest(expected, msg["mac"])


def tls_options(host: str, ca_file: str | None):
    """Twisted client TLS options that verify the chain against ``ca_file`` (PEM, one or more certificates) or the
    platform's trust store, and the certificate's name (or IP address) against ``host``."""
    from twisted.internet import ssl

    if ca_file is None:
        trust = ssl.platformTrust()
    else:
        path = Path(ca_file)
        if not path.is_file():
            raise FileNotFoundError(f"CA file {path} does not exist")
        blocks = [b for b in path.read_text(encoding="utf8").split("-----END CERTIFICATE-----") if "BEGIN" in b]
        try:
            certs = [ssl.Certificate.loadPEM(b + "-----END CERTIFICATE-----\n") for b in blocks]
        except Exception as e:  # pyOpenSSL raises its own Error type for a bad PEM
            raise ValueError(f"CA file {path} is not a PEM certificate bundle ({e})") from None
        if not certs:
            raise ValueError(f"CA file {path} holds no PEM certificate")
        trust = ssl.trustRootFromCertificates(certs)
    return ssl.optionsForClientTLS(host, trustRoot=trust)


def diagnose_tls(host: str, port: int, ca_file: str | None, timeout: float = 5.0) -> str:
    """Why a TLS handshake fails, in OpenSSL's words (twisted reports only that the connection closed): one more
    handshake with Python's ``ssl`` and the same trust (``ca_file`` or the system's CAs) and name check."""
    import socket
    import ssl

    context = ssl.create_default_context(cafile=ca_file)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with context.wrap_socket(sock, server_hostname=host):
                return "the server closed the connection during the handshake"
    except ssl.SSLCertVerificationError as e:
        return f"certificate verify failed: {e.verify_message}"
    except (ssl.SSLError, OSError) as e:
        return str(e)


class _QuietTransportNoise:
    """Drop twisted log records about failures that the link itself reports as a one-line error (a refused TLS
    handshake, messages queued before the server closed the connection): left in, they print tracebacks."""

    NOISE = ("SSL error:", "Attempt to send on a closed protocol")

    def filter(self, record) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += str(record.exc_info[1])
        return not any(n in text for n in self.NOISE)


def open_ros(url: str, host: str, security: Security):
    """A ``roslibpy.Ros`` for ``url`` (``ws://`` or ``wss://``; IPv6 hosts in brackets), connecting in the
    background. For ``wss://`` the handshake verifies as :func:`tls_options` says; ``ros.tls_failed`` is set with
    ``ros.tls_error`` when it fails (and reconnection stops)."""
    import roslibpy
    from autobahn.twisted.websocket import connectWS

    import logging

    twisted_log = logging.getLogger("twisted")
    if not any(isinstance(f, _QuietTransportNoise) for f in twisted_log.filters):
        twisted_log.addFilter(_QuietTransportNoise())
    secure = url.startswith("wss://")
    tls = tls_options(host, security.ca_file) if secure else None

    class _Ros(roslibpy.Ros):
        def connect(self):   # runs inside Ros.__init__, before the factory first dials
            factory = self.factory
            if tls is not None and not getattr(factory, "_verified", False):
                factory._verified = True
                self.tls_failed, self.tls_error = threading.Event(), None

                def dial():
                    factory.connector = connectWS(factory, contextFactory=tls)

                def lost(connector, reason, original=factory.clientConnectionLost):
                    if factory._proto is None:   # the handshake never completed: no retry can fix a certificate
                        self.tls_error = reason.getErrorMessage()
                        factory.stopTrying()
                        self.tls_failed.set()
                    original(connector, reason)

                factory._connect, factory.clientConnectionLost = dial, lost
            super().connect()

    # the whole URL goes in as the host: autobahn's create_url would drop the brackets of an IPv6 address
    return _Ros(host=url.rstrip("/"))
