"""Command line: `bitbucket-emulator serve [--flavor cloud|datacenter] --data FILE --state-dir DIR ...`."""

import argparse
import json
import os
import signal
import sys
import threading

from . import data as data_module
from . import dcdata
from .app import EmulatorApp
from .datacenter import DataCenterApp
from .server import EmulatorServer, listen, setup_logging
from .tls import server_context

EXIT_BAD_INPUT = 2


def _parser():
    parser = argparse.ArgumentParser(prog="bitbucket-emulator", description="A local Bitbucket Cloud or Data Center emulator for tests and demos.")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("serve", help="serve HTTPS until SIGTERM or SIGINT")
    command.add_argument("--flavor", choices=("cloud", "datacenter"), default="cloud",
                         help="cloud: bitbucket.org (default); datacenter: Bitbucket Data Center (REST 1.0, /scm/ git)")
    command.add_argument("--data", help="YAML data file (default: the flavour's bundled data)")
    command.add_argument("--state-dir", required=True, help="directory for the CA, git repositories and logs")
    command.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    command.add_argument("--port", type=int, default=0, help="port (default: 0, any free port)")
    command.add_argument("--mode", choices=("current", "legacy"), default="current",
                         help="cloud only; current: Bitbucket since 2026-05-04; legacy: the behaviour before it")
    command.add_argument("--latency-ms", type=int, default=0, help="added latency per request, in milliseconds")
    return parser


def _fail(message):
    print("bitbucket-emulator: error: %s" % message, file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


def serve(args):
    """Run the server until a signal arrives; returns the exit code."""
    if args.latency_ms < 0 or not 0 <= args.port <= 65535:
        return _fail("--latency-ms must be 0 or more and --port from 0 to 65535")
    datacenter = args.flavor == "datacenter"
    if datacenter and args.mode != "current":
        return _fail("--mode legacy applies to the cloud flavour only")
    try:
        directory = (dcdata if datacenter else data_module).load(args.data)
    except data_module.DataError as err:
        return _fail(str(err))
    state_dir = os.path.abspath(args.state_dir)
    try:
        os.makedirs(state_dir, exist_ok=True)
        log_handler = setup_logging(os.path.join(state_dir, "emulator.log"))
        context, ca_file = server_context(state_dir)
    except OSError as err:
        return _fail("cannot use state dir %s: %s" % (state_dir, err.strerror or err))

    stop = threading.Event()
    # The handlers only set a flag; the main thread does the shutdown.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())

    try:
        listener = listen(args.host, args.port)
    except OSError as err:
        return _fail("cannot listen on %s port %d: %s" % (args.host, args.port, err.strerror or err))
    app = (DataCenterApp if datacenter else EmulatorApp)(directory, state_dir, mode=args.mode, latency_ms=args.latency_ms)
    server = EmulatorServer(listener, app, context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="serve", daemon=True)
    thread.start()

    host = "[%s]" % args.host if ":" in args.host else args.host
    base_url = "https://%s:%d" % (host, server.port)
    if datacenter:
        info = {
            "flavor": "datacenter",
            "base_url": base_url,
            "api_url": base_url + "/rest/api/1.0",
            "token_url": base_url + "/rest/oauth2/latest/token",
            "authorize_url": base_url + "/rest/oauth2/latest/authorize",
            "git_url": base_url,
            "ca_file": ca_file,
        }
    else:
        info = {
            "flavor": "cloud",
            "base_url": base_url,
            "api_url": base_url + "/2.0",
            "token_url": base_url + "/site/oauth2/access_token",
            "git_url": base_url,
            "ca_file": ca_file,
        }
    try:
        print(json.dumps(info), flush=True)
    except BrokenPipeError:
        stop.set()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    thread.join(timeout=5)
    app.close()
    log_handler.close()
    return 0


def main(argv=None):
    """Entry point of the bitbucket-emulator console script."""
    args = _parser().parse_args(argv)
    try:
        return serve(args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
