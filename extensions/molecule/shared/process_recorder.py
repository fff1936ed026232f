"""Record the command line and environment of every process on a molecule host, for the leak check.

    python3 process_recorder.py start LOG
    python3 process_recorder.py stop LOG [--count WORD]... [--argv-log FILE]

Runs on the host, as root (ansible.builtin.script). `start` leaves a recorder running in the
background (once: when the recorder of LOG runs already it starts none) and prints {"started": ...}.
The recorder reads /proc/PID/cmdline and /proc/PID/environ of every process every few milliseconds
and appends each new (pid, command line, environment) to LOG, one JSON object a line, mode 0600.
It looks for no secret itself, since the host must not know them: the leak check greps every file
of the host, LOG included. Without CAP_SYS_PTRACE (the containers lack it), no environment can be
read of a process that is not dumpable: setuid programs (sudo), runc's init, a fork between its
change of user and its exec; those records have "environ": null.

`stop` ends the recorder and prints what LOG holds: the number of records and of those whose
environment could not be read; for each --count WORD, the number of processes with an argument that
ends in /WORD (forks not yet exec'd count too); and, with --argv-log (the git wrapper's record), how
many of the distinct git command lines there LOG caught too, environment included. A process
shorter than the interval can slip through; every git run starts as the recording wrapper, a Python
process that lives tens of milliseconds, so that last figure shows how much the recorder saw.
"""

import argparse
import ctypes
import hashlib
import json
import os
import signal
import sys
import time

INTERVAL = 0.005
_LIBC = ctypes.CDLL(None, use_errno=True)
WRAPPER = "/usr/local/bin/git"  # the recording git wrapper; as a process: /usr/bin/python3 -I /usr/local/bin/git ARGS


def _pid_file(log):
    return log + ".pid"


def _running(log):
    """The pid of the recorder of log, or None."""
    try:
        with open(_pid_file(log), encoding="ascii") as handle:
            pid = int(handle.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if os.fsencode(log) in argv else None


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None  # gone, or not ours to read


def _ids(pid):
    """The real uid and gid of pid, from /proc/PID/status (which anyone may read)."""
    ids = {}
    for line in (_read("/proc/%s/status" % pid) or b"").splitlines():
        if line.startswith((b"Uid:", b"Gid:")):
            ids[line[:3]] = int(line.split()[1])
    return (ids[b"Uid"], ids[b"Gid"]) if len(ids) == 2 else None


def _environ(pid):
    """The environment of pid, or None when it cannot be read.

    The kernel lets only the process's own user read it (or a holder of CAP_SYS_PTRACE, which the
    containers lack), judged by the reader's filesystem ids: for another user's process, root takes
    that user's uid and gid as its filesystem ids for the read, and its own back afterwards.
    """
    path = "/proc/%s/environ" % pid
    data = _read(path)
    ids = _ids(pid) if data is None else None
    if ids is None:
        return data
    _LIBC.setfsgid(ids[1])
    _LIBC.setfsuid(ids[0])
    try:
        return _read(path)
    finally:
        _LIBC.setfsuid(0)
        _LIBC.setfsgid(0)


def record(log):
    """Sample /proc until SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *dummy: sys.exit(0))
    with open(os.open(_pid_file(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="ascii") as handle:
        handle.write("%d\n" % os.getpid())
    seen = set()
    me = os.getpid()
    with open(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab", buffering=0) as out:
        while True:
            for name in os.listdir("/proc"):
                if not name.isdigit() or int(name) == me:
                    continue
                cmdline = _read("/proc/%s/cmdline" % name)
                environ = _environ(name)
                if not cmdline:
                    continue
                key = hashlib.sha256(name.encode() + b"\n" + cmdline + b"\n" + (b"-" if environ is None else b"+" + environ)).digest()
                if key in seen:
                    continue
                seen.add(key)
                entry = {"pid": int(name),
                         "argv": [arg.decode("utf-8", "surrogateescape") for arg in cmdline.split(b"\0")[:-1]],
                         "environ": None if environ is None else
                         [var.decode("utf-8", "surrogateescape") for var in environ.split(b"\0") if var]}
                out.write((json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape"))
            time.sleep(INTERVAL)


def start(log):
    if _running(log):
        return {"started": False}
    if os.fork() == 0:
        # A daemon: its own session, none of the exec session's files held open, so that the task returns.
        # It goes on in this process's code: the script module removes the script file once start returns.
        os.setsid()
        if os.fork() == 0:
            os.chdir("/")
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            try:
                record(log)
            finally:
                os._exit(0)
        os._exit(0)
    os.wait()
    deadline = time.monotonic() + 10
    while not _running(log):
        if time.monotonic() > deadline:
            raise SystemExit("the recorder of %s did not start" % log)
        time.sleep(0.05)
    return {"started": True}


def _git_argv(argv):
    """The git arguments of a recorded process, when it is git or the recording wrapper."""
    if len(argv) >= 3 and argv[1] == "-I" and argv[2] == WRAPPER:
        return argv[3:]
    if argv and os.path.basename(argv[0]) == "git":
        return argv[1:]
    return None


def stop(log, words, argv_log):
    pid = _running(log)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _running(log) and time.monotonic() < deadline:
            time.sleep(0.05)
        if os.path.exists(_pid_file(log)):
            os.unlink(_pid_file(log))
    with open(log, encoding="utf-8", errors="surrogateescape") as handle:
        entries = [json.loads(line) for line in handle if line.strip()]
    counts = {}
    for word in words:
        counts[word] = len({e["pid"] for e in entries if any(a.endswith("/" + word) for a in e["argv"])})
    answer = {"stopped": bool(pid), "records": len(entries), "count": counts,
              "environ_unreadable": sum(1 for e in entries if e["environ"] is None)}
    if argv_log:
        with open(argv_log, encoding="utf-8", errors="surrogateescape") as handle:
            wanted = {tuple(json.loads(line)["argv"]) for line in handle if line.strip()}
        # Caught: seen with its environment.
        caught = {tuple(argv) for argv, e in ((_git_argv(e["argv"]), e) for e in entries)
                  if argv is not None and e["environ"] is not None}
        answer["git_command_lines"] = {"recorded_by_wrapper": len(wanted), "caught": len(wanted & caught)}
    return answer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("log")
    parser.add_argument("--count", action="append", default=[])
    parser.add_argument("--argv-log")
    args = parser.parse_args(argv)
    log = os.path.abspath(args.log)
    if args.action == "start":
        print(json.dumps(start(log)))
    else:
        print(json.dumps(stop(log, args.count, args.argv_log)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
