"""The threaded HTTPS server (werkzeug) and a request log that never holds secrets."""

import logging
import re
import socket
import ssl
import sys
import urllib.parse

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

LOG = logging.getLogger("bitbucket_emulator")


def redact(text):
    """Drop query strings and credentials from a log line."""
    text = re.sub(r"\?\S*", "?[redacted]", str(text))
    return re.sub(r"(?i)(authorization|token|password|secret)\S*", r"\1=[redacted]", text)


class RequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, with the TLS handshake in the connection's own thread and a safe log."""

    # Idle connections are dropped after this many seconds (StreamRequestHandler applies it).
    timeout = 120

    def handle(self):
        try:
            self.connection.do_handshake()
        except (ssl.SSLError, OSError) as err:
            LOG.info("%s TLS handshake failed: %s", self.client_address[0], redact(err))
            return
        super().handle()

    def log_request(self, code="-", size="-"):
        # Method, path without the query string (it may hold ?access_token=) and status only.
        path = urllib.parse.urlsplit(getattr(self, "path", None) or "").path or "-"
        LOG.info('%s "%s %s" %s', self.address_string(), getattr(self, "command", None) or "-", path, code)

    def log_error(self, format, *args):  # pylint: disable=redefined-builtin
        LOG.warning("%s %s", self.address_string(), redact(format % args if args else format))

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        LOG.info("%s %s", self.address_string(), redact(format % args if args else format))


class EmulatorServer(ThreadedWSGIServer):
    """Accepts plain TCP and wraps each connection in TLS without handshaking in the accept loop,
    so one slow or broken client cannot stall every other connection."""

    def __init__(self, listener, app, ssl_context):
        host, port = listener.getsockname()[:2]
        # werkzeug adopts (a duplicate of) our bound socket instead of binding itself, so that
        # a busy port is reported by listen() as one OSError rather than printed by werkzeug.
        super().__init__(host, port, app, handler=RequestHandler, fd=listener.fileno())
        listener.close()
        self.ssl_context = ssl_context

    def get_request(self):
        sock, address = self.socket.accept()
        return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address):
        LOG.warning("connection from %s failed: %s", client_address[0], redact(sys.exc_info()[1]))


def listen(host, port):
    """A listening TCP socket on host:port (port 0: any free port); raises OSError."""
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def setup_logging(path):
    """Send the emulator's and werkzeug's logs to a file (stderr is kept for fatal errors)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for name in ("bitbucket_emulator", "werkzeug"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return handler
