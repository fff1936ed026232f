# Installed as /usr/local/bin/git in the molecule test image, ahead of /usr/bin/git on PATH, with
# "#!/usr/bin/python3 -I" put in front (build-image.sh and shared/prepare.yml do that).
# It appends every command line git is given, with the caller's uid, to /var/log/git-argv.log
# as one JSON object a line, then runs the real git. The leak check greps that log for secrets.
# A run that cannot be recorded fails, so the log never silently misses a command line.
import json
import os
import sys

LOG = "/var/log/git-argv.log"
REAL_GIT = "/usr/bin/git"

try:
    cwd = os.getcwd()
except OSError:
    cwd = None
line = json.dumps({"uid": os.getuid(), "cwd": cwd, "argv": sys.argv[1:]}) + "\n"
try:
    # One write() of one line in append mode, so concurrent git runs do not interleave.
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line.encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)
except OSError as err:
    sys.stderr.write("git-argv-recorder: cannot append to %s: %s\n" % (LOG, err.strerror))
    sys.exit(125)
os.execv(REAL_GIT, ["git"] + sys.argv[1:])
