"""Fail when a secret shows up where it must not: the leak check of every molecule scenario.

The secrets are every access and refresh token the emulator issued (GET /_emulator/stats) and every
secret of the emulator's data file (consumer secrets, app passwords, API and workspace tokens).
Each is looked for as it is, percent-encoded, and inside a base64 HTTP Basic credential. Places:
  (a) the Ansible logs given with --log (the scenario's log at -vvvv);
  (b) every file on every host (all of / except /proc, /sys and /dev), except the credential-store
      files that the checkouts given with --dest name in their local git config, and the files
      given with --allow HOST:PATH;
  (c) every command line git ran on the hosts, recorded by the image's git wrapper in
      /var/log/git-argv.log; with --expect-git an empty record fails too, since it proves nothing
      (except on the hosts given with --without-git).
It prints where it found what (never the secret itself) and exits 1 on any hit, 2 on bad setup.
"""

import argparse
import base64
import concurrent.futures
import json
import os
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request

import yaml

ARGV_LOG = "/var/log/git-argv.log"
SECRET_KEYS = {"token", "secret", "password", "client_secret"}
SKIP_TOP_DIRS = {"proc", "sys", "dev"}
PODMAN = os.environ.get("MOLECULE_PODMAN_EXECUTABLE") or "podman"


class SetupError(Exception):
    pass


def issued_tokens(state_dir):
    with open(os.path.join(state_dir, "state.json"), encoding="utf-8") as handle:
        info = json.load(handle)["info"]
    context = ssl.create_default_context(cafile=info["ca_file"])
    with urllib.request.urlopen(info["base_url"] + "/_emulator/stats", context=context, timeout=30) as response:
        return json.load(response)["tokens"]


def data_secrets(path):
    """(label, secret, basic-auth user) for every secret of the emulator's data file."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    found = []
    for consumer in data.get("consumers", []):
        found.append(("client secret of %s" % consumer["key"], consumer["secret"], consumer["key"]))
    for user in data.get("users", []):
        for index, item in enumerate(user.get("app_passwords", [])):
            found.append(("app password %d of %s" % (index, user["username"]), item["password"], user["username"]))
        for index, item in enumerate(user.get("api_tokens", [])):
            found.append(("API token %d of %s" % (index, user["username"]), item["token"], user.get("email")))
        if user.get("password"):
            found.append(("account password of %s" % user["username"], user["password"], user["username"]))
    for workspace in data.get("workspaces", []):
        for index, item in enumerate(workspace.get("access_tokens", [])):
            found.append(("access token %d of workspace %s" % (index, workspace["slug"]), item["token"], "x-token-auth"))
    # Any other secret-named value (the Data Center data file's HTTP access tokens and OAuth applications),
    # with the user name of the user entry it belongs to for the Basic form.
    known = {secret for _label, secret, _user in found}

    def walk(node, where, user):
        if isinstance(node, dict):
            user = node.get("username", user)
            for key, value in node.items():
                if key in SECRET_KEYS and isinstance(value, str) and value not in known:
                    known.add(value)
                    found.append(("%s of %s" % (key, where), value, user))
                else:
                    walk(value, "%s/%s" % (where, node.get("slug") or node.get("key") or node.get("username") or key), user)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, "%s[%d]" % (where, index), user)

    walk(data, os.path.basename(path), None)
    return found


def patterns(tokens, secrets):
    """{pattern: label}: each secret raw, percent-encoded, and as a base64 Basic credential."""
    wanted = [("issued token %d" % index, token, "x-token-auth") for index, token in enumerate(tokens)] + secrets
    result = {}
    for label, secret, user in wanted:
        result.setdefault(secret, label)
        result.setdefault(urllib.parse.quote(secret, safe=""), label + " (percent-encoded)")
        if user:
            basic = base64.b64encode(("%s:%s" % (user, secret)).encode()).decode()
            result.setdefault(basic, label + " (in a Basic credential)")
    return result


def labels_in(text, found):
    return sorted({label for pattern, label in found.items() if pattern in text})


def podman(host, *argv, stdin=None):
    return subprocess.run([PODMAN, "exec", "-i", host, *argv], input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)


def store_files(host, dests):
    """Files that the checkouts' credential.*.helper entries name as credential stores, and the files their
    include.path entries name (where a Data Center Bearer header is kept).

    The checkouts are read with inspect_checkouts.py, run inside the host, as verify does.
    """
    if not dests:
        return set()
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "inspect_checkouts.py"), "rb") as handle:
        script = handle.read()
    result = podman(host, "/usr/bin/python3", "-", "root", *dests, stdin=script)
    if result.returncode != 0:
        raise SetupError("%s: cannot inspect the checkouts: %s" % (host, result.stderr.decode(errors="replace").strip()))
    checkouts = json.loads(result.stdout)
    return {store["path"] for checkout in checkouts.values()
            for store in checkout.get("store_files", []) + checkout.get("include_files", [])}


def check_host(host, found, allowed, dests, expect_git):
    problems = []
    # Top-level symlinks (/bin -> usr/bin) are left out: grep follows them, and their targets are searched anyway.
    listing = podman(host, "find", "/", "-mindepth", "1", "-maxdepth", "1", "!", "-type", "l", "-printf", "%f\\0")
    if listing.returncode != 0:
        raise SetupError("%s: cannot list /: %s" % (host, listing.stderr.decode(errors="replace").strip()))
    tops = ["/" + name.decode() for name in listing.stdout.split(b"\0") if name and name.decode() not in SKIP_TOP_DIRS]
    stores = store_files(host, dests)
    pattern_lines = "".join(pattern + "\n" for pattern in found).encode()
    # -r does not follow symlinks; -D skip leaves out devices, FIFOs and sockets.
    grep = podman(host, "grep", "-rlFZ", "-D", "skip", "-f", "/dev/stdin", "--", *tops, stdin=pattern_lines)
    if grep.returncode not in (0, 1):
        raise SetupError("%s: grep failed: %s" % (host, grep.stderr.decode(errors="replace").strip()[-2000:]))
    hits = [name.decode(errors="replace") for name in grep.stdout.split(b"\0") if name]
    for path in sorted(hits):
        if path in stores or path in allowed:
            continue
        content = podman(host, "cat", path).stdout.decode("latin-1")
        problems.append("%s:%s holds %s" % (host, path, ", ".join(labels_in(content, found)) or "a secret"))
    record = podman(host, "cat", ARGV_LOG)
    if record.returncode != 0:
        raise SetupError("%s: no git command line record at %s (is the git wrapper installed?)" % (host, ARGV_LOG))
    entries = [json.loads(line) for line in record.stdout.decode(errors="replace").splitlines() if line.strip()]
    for number, entry in enumerate(entries, 1):
        labels = labels_in(json.dumps(entry["argv"]) + "\0".join(entry["argv"]) + str(entry.get("cwd")), found)
        if labels:
            problems.append("%s: git command line %d (uid %s, git %s) holds %s"
                            % (host, number, entry.get("uid"), (entry["argv"] or ["?"])[0], ", ".join(labels)))
    if expect_git and not entries:
        problems.append("%s: the git wrapper recorded no command line, so the argv check proves nothing" % host)
    return problems, len(entries), sorted(stores)


def allowed_on(host, specs):
    return {spec.split(":", 1)[1] for spec in specs if spec.split(":", 1)[0] == host}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--state-dir", required=True, help="the emulator's state directory (state.json)")
    parser.add_argument("--data", required=True, help="the emulator's data file")
    parser.add_argument("--log", action="append", default=[], help="an Ansible log to search")
    parser.add_argument("--host", action="append", default=[], help="a container to search")
    parser.add_argument("--dest", action="append", default=[], help="a checkout whose credential store is allowed")
    parser.add_argument("--allow", action="append", default=[], help="HOST:PATH of a file allowed to hold a secret")
    parser.add_argument("--expect-git", action="store_true", help="fail when a host recorded no git command line")
    parser.add_argument("--without-git", action="append", default=[], help="a host exempt from --expect-git")
    args = parser.parse_args(argv)
    try:
        tokens = issued_tokens(args.state_dir)
        found = patterns(tokens, data_secrets(args.data))
        problems = []
        for log in args.log:
            with open(log, encoding="utf-8", errors="replace") as handle:
                for number, line in enumerate(handle, 1):
                    labels = labels_in(line, found)
                    if labels:
                        problems.append("%s line %d holds %s" % (log, number, ", ".join(labels)))
        # Hosts in parallel: the search is CPU-bound inside each container.
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            checks = [pool.submit(check_host, host, found, allowed_on(host, args.allow), args.dest,
                                  args.expect_git and host not in args.without_git)
                      for host in args.host]
            for host, check in zip(args.host, checks):
                host_problems, recorded, stores = check.result()
                problems += host_problems
                print("%s: %d git command lines recorded; credential stores allowed: %s"
                      % (host, recorded, ", ".join(stores) or "none"))
    except (OSError, ValueError, KeyError, SetupError) as err:
        print("leak check could not run: %s" % err, file=sys.stderr)
        return 2
    print("searched for %d issued tokens and %d data-file secrets (%d patterns) in %d logs and %d hosts"
          % (len(tokens), len(data_secrets(args.data)), len(found), len(args.log), len(args.host)))
    for problem in problems:
        print("LEAK: " + problem)
    if problems:
        return 1
    print("no leak found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
