"""Real bare git repositories: lazy creation with git fast-import, refs, smart HTTP (git http-backend) and archives."""

import dataclasses
import datetime
import hashlib
import http.client
import os
import re
import shutil
import subprocess
import threading
import time

GIT = shutil.which("git") or "git"
_HEX_RE = re.compile(r"[0-9a-fA-F]{4,40}")
_EXTENSIONS = {
    "python": "py", "go": "go", "java": "java", "javascript": "js", "typescript": "ts", "rust": "rs",
    "shell": "sh", "ruby": "rb", "kotlin": "kt", "markdown": "md",
}
_FIELD = "%1f"
_RECORD = "%1e"
# One for-each-ref call gives everything the refs endpoints need; the "*" fields are the
# commit behind an annotated tag.
_REF_FORMAT = _FIELD.join((
    "%(refname)", "%(objecttype)", "%(objectname)", "%(parent)", "%(committerdate:unix)", "%(authorname)",
    "%(authoremail)", "%(contents)", "%(*objectname)", "%(*parent)", "%(*committerdate:unix)", "%(*authorname)",
    "%(*authoremail)", "%(*contents)", "%(taggername)", "%(taggeremail)", "%(taggerdate:unix)",
)) + _RECORD


@dataclasses.dataclass
class Commit:
    """A commit as the refs endpoints show it."""

    hash: str
    date: datetime.datetime
    message: str
    author: str
    parents: tuple
    author_date: datetime.datetime = None  # when it differs from date (the committer date)


@dataclasses.dataclass
class Ref:
    """A branch or an annotated tag."""

    kind: str
    name: str
    commit: Commit
    tag_message: str = None
    tag_date: datetime.datetime = None
    tagger: str = None
    object_hash: str = None  # the tag object of an annotated tag


class GitError(RuntimeError):
    """A git command failed."""


def _timestamp(value):
    return datetime.datetime.fromtimestamp(int(value), datetime.timezone.utc)


class RepoStore:
    """Bare repositories under <state-dir>/repos/<owner>/<slug>.git, created on first use.

    Both flavours use it: a repository gives git_owner (the directory: a workspace slug or a
    lowercase project key), members (usernames; the first with an email authors the commits),
    slug, full_name, name, description, language, branches, tags, created_on and updated_on.

    Creating 250+ repositories at startup would take seconds, so each one is built the first
    time git, refs or archive access needs it, under a per-repository lock. The content is a
    pure function of the data file, so commit hashes are stable across runs.
    """

    def __init__(self, state_dir, directory):
        self.directory = directory
        self.root = os.path.join(state_dir, "repos")
        os.makedirs(self.root, exist_ok=True)
        self.home = os.path.join(state_dir, "git-home")
        os.makedirs(self.home, exist_ok=True)
        # git's stderr goes to a log file in the state dir, never to the emulator's stderr.
        self._log = open(os.path.join(state_dir, "git.log"), "ab")  # pylint: disable=consider-using-with
        self._locks = {}
        self._locks_guard = threading.Lock()
        self._refs = {}

    def close(self):
        """Close the git log file."""
        self._log.close()

    def env(self, extra=None):
        """A minimal environment for git: no user config, no inherited secrets."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.home,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "LANG": "C",
        }
        env.update(extra or {})
        return env

    def path(self, repo):
        """Where the bare repository of repo lives."""
        return os.path.join(self.root, repo.git_owner, repo.slug.lower() + ".git")

    def author(self, repo):
        """Commits are authored by the first member (so target.author.user resolves)."""
        for name in repo.members:
            user = self.directory.users.get(name)
            if user is not None and user.email:
                return "%s <%s>" % (user.display_name, user.email)
        return "Bitbucket Emulator <emulator@example.invalid>"

    def _lock(self, repo):
        with self._locks_guard:
            return self._locks.setdefault(repo.full_name.lower(), threading.Lock())

    def ensure(self, repo):
        """Create the repository if needed and return its path."""
        path = self.path(repo)
        with self._lock(repo):
            stream = _fast_import_stream(repo, self.author(repo))
            fingerprint = hashlib.sha256(stream).hexdigest()
            marker = os.path.join(path, "emulator-fingerprint")
            try:
                with open(marker, encoding="ascii") as handle:
                    if handle.read().strip() == fingerprint:
                        return path
            except OSError:
                pass
            # Build beside the final place and rename, so a crash never leaves half a repository.
            tmp = "%s.tmp-%d-%d" % (path, os.getpid(), threading.get_ident())
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._run([GIT, "init", "--quiet", "--bare", "--initial-branch=" + repo.mainbranch, tmp])
            self._run([GIT, "--git-dir=" + tmp, "fast-import", "--quiet"], stdin=stream)
            with open(os.path.join(tmp, "emulator-fingerprint"), "w", encoding="ascii") as handle:
                handle.write(fingerprint + "\n")
            shutil.rmtree(path, ignore_errors=True)
            os.rename(tmp, path)
            self._refs.pop(repo.full_name.lower(), None)
            return path

    def _run(self, args, stdin=None):
        result = subprocess.run(args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(), check=False)
        if result.returncode != 0:
            self._log.write(result.stderr)
            self._log.flush()
            raise GitError("%s failed with exit code %d" % (" ".join(args[:3]), result.returncode))
        return result.stdout

    def commit(self, repo, branch, files, message):
        """Add one commit on branch (a new branch starts at the main branch) and return its hash.

        files maps paths to their new content, or to None to delete them. ensure() checks only the
        fingerprint of what the data file builds, so commits added here stay until the data changes.
        """
        path = self.ensure(repo)
        with self._lock(repo):
            parent = self._tip(path, branch) or self._tip(path, repo.mainbranch)
            # Later than the parent, so "newest first" orders stay true even within one second.
            when = int(time.time())
            if parent is not None:
                parent_time = self._run([GIT, "--git-dir=" + path, "show", "-s", "--format=%ct", parent])
                when = max(when, int(parent_time.decode().strip()) + 1)
            author = self.author(repo)
            out = [("commit refs/heads/%s\n" % branch).encode(),
                   ("author %s %d +0000\ncommitter %s %d +0000\n" % (author, when, author, when)).encode(),
                   _data(message.rstrip("\n") + "\n")]
            if parent is not None:
                out.append(("from %s\n" % parent).encode())
            for name, content in sorted(files.items()):
                if content is None:
                    out.append(("D %s\n" % name).encode())
                else:
                    out.append(("M 100644 inline %s\n" % name).encode())
                    out.append(_data(content))
            self._run([GIT, "--git-dir=" + path, "fast-import", "--quiet"], stdin=b"".join(out))
            self._refs.pop(repo.full_name.lower(), None)
            return self._tip(path, branch)

    def _tip(self, path, branch):
        result = subprocess.run(
            [GIT, "--git-dir=" + path, "rev-parse", "--verify", "--quiet", "refs/heads/%s^{commit}" % branch],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env(), check=False,
        )
        return result.stdout.decode().strip() or None if result.returncode == 0 else None

    def refs(self, repo):
        """All branches and tags of repo (cached; commit() drops the cache of the repository it changes)."""
        key = repo.full_name.lower()
        cached = self._refs.get(key)
        if cached is not None:
            return cached
        path = self.ensure(repo)
        output = self._run([GIT, "--git-dir=" + path, "for-each-ref", "--format=" + _REF_FORMAT, "refs/heads", "refs/tags"])
        refs = []
        for record in output.decode("utf-8", "replace").split("\x1e"):
            record = record.lstrip("\n")
            if record:
                refs.append(_parse_ref(record.split("\x1f")))
        self._refs[key] = refs
        return refs

    def find_ref(self, repo, kind, name):
        """The branch or tag called name, or None."""
        for ref in self.refs(repo):
            if ref.kind == kind and ref.name == name:
                return ref
        return None

    def resolve(self, repo, name):
        """Resolve a branch, tag or (abbreviated) commit hash to a full commit hash, or None."""
        for kind in ("branch", "tag"):
            ref = self.find_ref(repo, kind, name)
            if ref is not None:
                return ref.commit.hash
        if not _HEX_RE.fullmatch(name):
            return None
        path = self.ensure(repo)
        result = subprocess.run(
            [GIT, "--git-dir=" + path, "rev-parse", "--verify", "--quiet", name + "^{commit}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env(), check=False,
        )
        if result.returncode != 0:
            return None
        return result.stdout.decode().strip() or None

    def show(self, repo, name):
        """The commit a branch, tag or (abbreviated) hash names, or None."""
        commit = self.resolve(repo, name)
        if commit is None:
            return None
        fields = ("%H", "%P", "%ct", "%at", "%an <%ae>", "%B")
        output = self._run([GIT, "--git-dir=" + self.ensure(repo), "show", "-s", "--format=" + "%x1f".join(fields), commit])
        hash_, parents, date, author_date, author, message = output.decode("utf-8", "replace").split("\x1f", 5)
        return Commit(hash_, _timestamp(date), message.rstrip("\n") + "\n", author, tuple(parents.split()), _timestamp(author_date))

    def archive(self, repo, commit, fmt, prefix):
        """Stream `git archive` output for commit as an iterator of bytes."""
        path = self.ensure(repo)
        args = [GIT, "--git-dir=" + path, "archive", "--format=" + fmt, "--prefix=" + prefix, commit]
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log, env=self.env(),
        )
        return _stream(proc)

    def http_backend(self, repo, environ, rest, remote_user, body):
        """Run git http-backend (CGI) for one smart HTTP request; return (status, headers, body iterator)."""
        self.ensure(repo)
        cgi = {
            "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": "/%s/%s.git/%s" % (repo.git_owner, repo.slug.lower(), rest),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "REMOTE_USER": remote_user or "",
            "REMOTE_ADDR": environ.get("REMOTE_ADDR", "127.0.0.1"),
        }
        for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(name):
                cgi[name] = environ[name]
        # Git-Protocol (protocol v2) and Content-Encoding (gzip bodies) matter to http-backend;
        # credentials and cookies are never passed on.
        for name in ("HTTP_GIT_PROTOCOL", "HTTP_CONTENT_ENCODING", "HTTP_USER_AGENT", "HTTP_ACCEPT"):
            if environ.get(name):
                cgi[name] = environ[name]
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [GIT, "http-backend"],
            stdin=subprocess.PIPE if body is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self._log, env=self.env(cgi),
        )
        if body is not None:
            threading.Thread(target=_feed, args=(body, proc.stdin), daemon=True).start()
        headers = http.client.parse_headers(proc.stdout)
        if not headers:
            _finish(proc)
            raise GitError("git http-backend gave no response")
        status = headers.get("Status", "200 OK")
        out = [(key, value) for key, value in headers.items() if key.lower() != "status"]
        return status, out, _stream(proc)


def _feed(body, pipe):
    """Copy the request body (possibly chunked) into the CGI's stdin, then close it."""
    try:
        while True:
            chunk = body.read(65536)
            if not chunk:
                break
            pipe.write(chunk)
    except (OSError, ValueError):
        pass  # the client went away or git exited early; git sees EOF either way
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _stream(proc):
    try:
        while True:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                break
            yield chunk
    finally:
        _finish(proc)


def _finish(proc):
    proc.stdout.close()
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _parse_ref(fields):
    (refname, objtype, objname, parents, date, author, email, contents,
     deref_name, deref_parents, deref_date, deref_author, deref_email, deref_contents,
     tagger, tagger_email, tagger_date) = fields
    if objtype == "tag":
        commit = Commit(deref_name, _timestamp(deref_date), deref_contents, "%s %s" % (deref_author, deref_email), tuple(deref_parents.split()))
        return Ref("tag", refname[len("refs/tags/"):], commit, contents, _timestamp(tagger_date), "%s %s" % (tagger, tagger_email), objname)
    commit = Commit(objname, _timestamp(date), contents, "%s %s" % (author, email), tuple(parents.split()))
    if refname.startswith("refs/heads/"):
        return Ref("branch", refname[len("refs/heads/"):], commit)
    return Ref("tag", refname[len("refs/tags/"):], commit)


# --- repository content -----------------------------------------------------------------


def _data(text):
    raw = text.encode("utf-8")
    return b"data %d\n%s\n" % (len(raw), raw)


def _source_file(repo):
    ext = _EXTENSIONS.get(repo.language.lower(), "txt")
    body = {
        "py": 'def main():\n    print("hello from %s")\n\n\nif __name__ == "__main__":\n    main()\n',
        "sh": '#!/bin/sh\necho "hello from %s"\n',
    }.get(ext, "// %s\n")
    return "src/main." + ext, body % repo.slug


def _fast_import_stream(repo, author):
    """A deterministic fast-import stream: three commits on the main branch, one on each other
    branch, and an annotated tag per tag name."""
    start = int(repo.created_on.timestamp())
    end = max(int(repo.updated_on.timestamp()), start + 3)
    middle = start + (end - start) // 2
    main = "refs/heads/" + repo.mainbranch
    readme = "# %s\n\n%s\n" % (repo.name, repo.description or "A repository served by the Bitbucket emulator.")
    source_path, source = _source_file(repo)
    main_commits = (
        (start, "Initial commit", "README.md", readme),
        (middle, "Add %s sources" % (repo.language or "project"), source_path, source),
        (end, "Update README", "README.md", readme + "\n## Usage\n\nClone it over HTTPS.\n"),
    )
    out = []
    for mark, (when, message, path, content) in enumerate(main_commits, start=1):
        out.append(("commit %s\nmark :%d\n" % (main, mark)).encode())
        out.append(("author %s %d +0000\ncommitter %s %d +0000\n" % (author, when, author, when)).encode())
        out.append(_data(message + "\n"))
        out.append(("M 100644 inline %s\n" % path).encode())
        out.append(_data(content))
    for index, branch in enumerate(repo.branches[1:], start=1):
        when = middle + index * 60
        out.append(("commit refs/heads/%s\n" % branch).encode())
        out.append(("author %s %d +0000\ncommitter %s %d +0000\n" % (author, when, author, when)).encode())
        out.append(_data("Work on %s\n" % branch))
        out.append(b"from :2\n")
        out.append(("M 100644 inline notes/branch-%d.md\n" % index).encode())
        out.append(_data("Notes for the %s branch.\n" % branch))
    # Later tags point at later commits of the main branch.
    for index, tag in enumerate(repo.tags):
        mark = max(1, len(main_commits) - len(repo.tags) + index + 1)
        when = main_commits[mark - 1][0] + 600
        out.append(("tag %s\nfrom :%d\ntagger %s %d +0000\n" % (tag, mark, author, when)).encode())
        out.append(_data("Release %s\n" % tag))
    return b"".join(out)
