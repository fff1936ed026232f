"""`make demo`: start the Bitbucket emulator and show one real token + clone round trip.

The steps are the ones users know from the classic recipe (curl the token endpoint, clone with
x-token-auth), run for real against the local emulator. Secrets are never printed.
"""

import json
import os
import subprocess
import sys
import tempfile

from bitbucket_emulator.testing import Emulator

CLIENT_ID = 'demoKey1234567890ab'
CLIENT_SECRET = 'demoSecret+With/Odd=Chars0123456789'
WORKSPACE = 'acme'
REPOSITORY = 'api'


def step(text):
    print('\n==> ' + text, flush=True)


def run(argv, shown, **kwargs):
    """Run argv; print `shown`, a copy of the command line with secrets masked."""
    print('$ ' + shown, flush=True)
    return subprocess.run(argv, check=True, **kwargs)


def main():
    work = tempfile.mkdtemp(prefix='codeferry-demo-')
    with Emulator(state_dir=os.path.join(work, 'emulator')) as emu:
        step('Bitbucket emulator running (bundled demo data)')
        for key in ('base_url', 'api_url', 'token_url', 'git_url', 'ca_file'):
            print('  %-9s %s' % (key, emu.info[key]))

        step('Mint an access token with the client_credentials grant (HTTP Basic client auth)')
        # curl reads the client credentials from a config file on stdin, so the secret is not in `ps`.
        reply = run(['curl', '-sS', '--fail-with-body', '--cacert', emu.ca_file, '-X', 'POST', '-K', '-',
                     emu.token_url, '-d', 'grant_type=client_credentials'],
                    'curl -X POST -u "%s:********" %s -d grant_type=client_credentials' % (CLIENT_ID, emu.token_url),
                    input='user = "%s:%s"\n' % (CLIENT_ID, CLIENT_SECRET), capture_output=True, text=True)
        token = json.loads(reply.stdout)
        print('  token_type=%s expires_in=%s scope=%r access_token=<%d characters, not shown>'
              % (token['token_type'], token['expires_in'], token.get('scope', token.get('scopes')), len(token['access_token'])))

        step('Clone %s/%s over HTTPS as x-token-auth' % (WORKSPACE, REPOSITORY))
        checkout = os.path.join(work, REPOSITORY)
        # The token goes to git through an environment-supplied credential helper, never the URL,
        # so it is neither in `ps` nor in .git/config.
        helper = '!f() { echo username=x-token-auth; echo "password=$DEMO_TOKEN"; }; f'
        run(['git', '-c', 'credential.helper=', '-c', 'credential.helper=' + helper,
             'clone', '--quiet', '%s/%s/%s.git' % (emu.git_url, WORKSPACE, REPOSITORY), checkout],
            'git clone https://x-token-auth:********@%s/%s/%s.git' % (emu.git_url.split('://', 1)[1], WORKSPACE, REPOSITORY),
            env=dict(emu.git_env(), DEMO_TOKEN=token['access_token']))
        run(['git', '-C', checkout, 'log', '--oneline', '-3'], 'git -C %s log --oneline -3' % checkout)
        remote = subprocess.run(['git', '-C', checkout, 'remote', 'get-url', 'origin'], check=True, capture_output=True, text=True)
        print('  origin = %s  (no credentials stored)' % remote.stdout.strip())

        stats = emu.stats()['requests']
        step('Emulator request counters: %s' % json.dumps(stats, sort_keys=True))
        if sys.stdin.isatty():
            print('\nThe emulator keeps running for you to explore; press Ctrl-C to stop it.')
            try:
                emu.process.wait()
            except KeyboardInterrupt:
                pass
    print('\nDemo finished. Files are in %s' % work)
    return 0


if __name__ == '__main__':
    sys.exit(main())
