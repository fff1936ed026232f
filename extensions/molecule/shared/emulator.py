"""Start and stop the Bitbucket emulator for a molecule scenario.

    emulator.py start --state-dir DIR [--data FILE] [--flavor cloud|datacenter]    prints the emulator's info JSON
    emulator.py stop --state-dir DIR

`start` runs `python -m bitbucket_emulator serve` on 127.0.0.1 (any free port) in the background,
in a fresh DIR (mode 0700), and writes DIR/state.json: {"pid": ..., "info": {base_url, api_url,
token_url, git_url, ca_file}}. The playbooks read that file. When the emulator of DIR is already
running, `start` only prints its info, so create can run again. `stop` sends SIGTERM to that
process (after checking that the pid still is that emulator) and removes DIR.
Run it with the Python that has the emulator installed (the venv's).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

START_TIMEOUT = 60


def _state_file(state_dir):
    return os.path.join(state_dir, "state.json")


def _read_state(state_dir):
    try:
        with open(_state_file(state_dir), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _is_our_emulator(pid, state_dir):
    """True when pid is alive and is the emulator serving state_dir (pids get reused)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return b"bitbucket_emulator" in argv and os.fsencode(state_dir) in argv


def start(state_dir, data, flavor="cloud"):
    state = _read_state(state_dir)
    if state and _is_our_emulator(state["pid"], state_dir):
        print(json.dumps(dict(state["info"], started=False)))
        return 0
    # A fresh directory each time: the emulator keeps commits added upstream in its repositories.
    shutil.rmtree(state_dir, ignore_errors=True)
    os.makedirs(state_dir, mode=0o700)
    os.chmod(state_dir, 0o700)
    stdout_path = os.path.join(state_dir, "stdout.log")
    stderr_path = os.path.join(state_dir, "stderr.log")
    argv = [sys.executable, "-m", "bitbucket_emulator", "serve", "--state-dir", state_dir,
            "--host", "127.0.0.1", "--port", "0", "--flavor", flavor]
    if data:
        argv += ["--data", os.path.abspath(data)]
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        # Its own session and no pipes of ours: Ansible's command module returns while it runs on.
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                   start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with open(stdout_path, encoding="utf-8") as handle:
            line = handle.readline()
        if line.endswith("\n"):
            info = json.loads(line)
            break
        if process.poll() is not None:
            with open(stderr_path, encoding="utf-8", errors="replace") as handle:
                message = handle.read().strip()
            print("the emulator exited with code %d: %s" % (process.returncode, message[-2000:]), file=sys.stderr)
            return 1
        time.sleep(0.1)
    else:
        process.terminate()
        print("the emulator printed nothing within %d s" % START_TIMEOUT, file=sys.stderr)
        return 1
    tmp = _state_file(state_dir) + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        json.dump({"pid": process.pid, "info": info}, handle)
    os.replace(tmp, _state_file(state_dir))
    print(json.dumps(dict(info, started=True)))
    return 0


def stop(state_dir):
    state = _read_state(state_dir)
    stopped = False
    if state and _is_our_emulator(state["pid"], state_dir):
        os.kill(state["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _is_our_emulator(state["pid"], state_dir):
            time.sleep(0.1)
        if _is_our_emulator(state["pid"], state_dir):
            os.kill(state["pid"], signal.SIGKILL)
        stopped = True
    shutil.rmtree(state_dir, ignore_errors=True)
    print(json.dumps({"stopped": stopped}))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--data")
    parser.add_argument("--flavor", choices=("cloud", "datacenter"), default="cloud")
    args = parser.parse_args(argv)
    state_dir = os.path.abspath(args.state_dir)
    if args.action == "start":
        return start(state_dir, args.data, args.flavor)
    return stop(state_dir)


if __name__ == "__main__":
    sys.exit(main())
