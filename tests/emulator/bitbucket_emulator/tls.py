"""The emulator's test CA (trustme) and the server's TLS context."""

import os
import pathlib
import ssl

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


def _load_or_create_ca(state_dir):
    """Reuse the CA kept in the state dir so clients can keep trusting it across restarts."""
    cert_path = pathlib.Path(state_dir) / "ca.pem"
    key_path = pathlib.Path(state_dir) / "ca-key.pem"
    if cert_path.is_file() and key_path.is_file():
        try:
            return trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes()), cert_path
        except ValueError:
            pass  # unreadable or foreign files: make a new CA below
    ca = trustme.CA(organization_name="Bitbucket emulator test CA")
    # The key file is written first with 0600 so the key is never world-readable.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(ca.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(cert_path))
    return ca, cert_path


def server_context(state_dir):
    """Return (ssl_context, ca_file) for a server certificate covering 127.0.0.1 and localhost."""
    ca, cert_path = _load_or_create_ca(state_dir)
    leaf = ca.issue_cert(*SERVER_NAMES)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return context, str(cert_path)
