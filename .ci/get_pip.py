"""Offline stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test creates one virtual environment per sanity test and installs pip into it with a
bootstrap script fetched from a host that this machine cannot reach. It looks for a cached copy
first (~/.ansible/test/cache/get_pip_<version>.py); `make sanity` puts this file there. It installs
the pip bundled with Python (ensurepip), then the requested pip version from the package index.
"""

import subprocess
import sys

# Options that only the original bootstrap script understands.
BOOTSTRAP_ONLY = {'--no-setuptools', '--no-wheel'}


def main():
    # In a child process: ensurepip hides the pip configuration (index, certificates) from its own process.
    subprocess.run([sys.executable, '-m', 'ensurepip', '--upgrade'], check=True, stdout=subprocess.DEVNULL)
    wanted = [arg for arg in sys.argv[1:] if arg not in BOOTSTRAP_ONLY]
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet'] + wanted, check=True)


if __name__ == '__main__':
    main()
