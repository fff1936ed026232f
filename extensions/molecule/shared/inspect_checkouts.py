"""Describe checkouts on a molecule host, as JSON, for the scenarios' verify assertions.

    python3 inspect_checkouts.py OWNER DEST...

Runs on the host (ansible.builtin.script). For each DEST it prints: whether it exists, its owner,
group and mode, the paths below it not owned by OWNER (first 20), and for a git checkout HEAD,
the origin URL (user information replaced by "***", so no token reaches the Ansible log), whether
the URL had any and its user name, `git status --porcelain`, backup refs, the credential helpers of the local config
with the mode and owner of each store file they name, the files its include.path entries name (Data Center's
header file), and the archive marker file when there is one.
git runs as /usr/bin/git (not the recording wrapper) with safe.directory=* so that root may look,
and changes nothing.
"""

import grp
import json
import os
import pwd
import re
import shlex
import stat
import subprocess
import sys

# --no-optional-locks: `git status` run as root must not rewrite the index (it would then belong to
# root, and the next run would rightly report an ownership change).
GIT = ["/usr/bin/git", "--no-optional-locks", "-c", "safe.directory=*"]


def git(dest, *args):
    result = subprocess.run(GIT + ["-C", dest] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            check=False)
    return result.stdout.decode("utf-8", "replace").strip() if result.returncode == 0 else None


def describe_file(path):
    try:
        info = os.lstat(path)
    except OSError:
        return {"path": path, "exists": False}
    return {"path": path, "exists": True, "mode": "%04o" % stat.S_IMODE(info.st_mode),
            "owner": _user(info.st_uid), "group": _group(info.st_gid)}


def _user(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def store_files(helpers):
    found = []
    for value in helpers:
        words = shlex.split(value.lstrip("!"))
        for index, word in enumerate(words):
            if word.startswith("--file="):
                found.append(word[len("--file="):])
            elif word == "--file" and index + 1 < len(words):
                found.append(words[index + 1])
    return found


def inspect(owner, dest):
    result = describe_file(dest)
    result["dest"] = dest
    if not result["exists"]:
        return result
    result["inode"] = os.stat(dest).st_ino
    not_owned = []
    for root, dirs, files in os.walk(dest):
        for name in dirs + files:
            path = os.path.join(root, name)
            if _user(os.lstat(path).st_uid) != owner and len(not_owned) < 20:
                not_owned.append(path)
    result["not_owned"] = not_owned
    result["git"] = os.path.isdir(os.path.join(dest, ".git"))
    marker = os.path.join(dest, ".codeferry-archive.json")
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as handle:
            result["archive_marker"] = handle.read()
    if not result["git"]:
        return result
    origin = git(dest, "remote", "get-url", "origin") or ""
    userinfo = re.match(r"^[a-z+]+://([^/]*)@", origin)
    result["origin_has_userinfo"] = bool(userinfo)
    # The user name only; a password or token after the colon stays out of the output.
    result["origin_user"] = userinfo.group(1).partition(":")[0] if userinfo else None
    result["origin"] = re.sub(r"^([a-z+]+://)[^/]*@", r"\1***@", origin)
    result["head"] = git(dest, "rev-parse", "HEAD")
    result["branch"] = git(dest, "symbolic-ref", "--quiet", "--short", "HEAD")
    result["status"] = git(dest, "status", "--porcelain", "--untracked-files=all")
    refs = git(dest, "for-each-ref", "--format=%(refname)", "refs/codeferry/backup/") or ""
    result["backup_refs"] = refs.split()
    helpers = git(dest, "config", "--local", "--get-regexp", r"^credential\..*helper$") or ""
    result["credential_helpers"] = [line.partition(" ")[2] for line in helpers.splitlines()]
    result["store_files"] = [describe_file(path) for path in store_files(result["credential_helpers"])]
    # Data Center's Bearer header is kept in a file that the local config includes (relative to .git).
    includes = git(dest, "config", "--local", "--get-all", "include.path") or ""
    result["include_files"] = [describe_file(os.path.join(dest, ".git", path)) for path in includes.splitlines()]
    result["git_dir_inode"] = os.stat(os.path.join(dest, ".git")).st_ino
    result["config"] = describe_file(os.path.join(dest, ".git", "config"))
    return result


def main(argv):
    owner, dests = argv[0], argv[1:]
    print(json.dumps({dest: inspect(owner, dest) for dest in dests}))


if __name__ == "__main__":
    main(sys.argv[1:])
