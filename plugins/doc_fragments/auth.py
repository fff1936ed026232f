# Copyright (c) 2026 codeferry.bitbucket contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Options of every module that calls the REST API. The shared argument spec is
    # plugins/module_utils/_auth.py api_argument_spec(); use together with the OAUTH fragment.
    DOCUMENTATION = r'''
options:
  api_url:
    description:
      - Base URL of the Bitbucket REST API, Bitbucket Cloud's REST API 2.0 or the REST API 1.0 of a Bitbucket
        Data Center instance.
      - A URL whose path ends in C(/rest/api/1.0) or C(/rest/api/latest), for example
        V(https://bitbucket.example.com/rest/api/1.0), is a Data Center instance, and the module talks to it as
        Data Center. Any other URL is Bitbucket Cloud; change it on Cloud only for a test double such as the
        bundled emulator.
      - If not set, the environment variable E(BITBUCKET_API_URL) is used (an empty one counts as not set),
        else V(https://api.bitbucket.org/2.0).
    type: str
    default: https://api.bitbucket.org/2.0
  access_token:
    description:
      - A bearer token, sent in the C(Authorization) header.
      - On Bitbucket Cloud, an OAuth access token (for example RV(codeferry.bitbucket.oauth_token#module:access_token)),
        or a repository, project or workspace access token.
      - On Bitbucket Data Center, an HTTP access token (personal, project or repository), or an OAuth access token
        from M(codeferry.bitbucket.oauth_token) with O(codeferry.bitbucket.oauth_token#module:grant_type=refresh_token).
      - Mutually exclusive with O(client_id)/O(client_secret) and O(username)/O(password).
      - If no authentication option is set, the environment variable E(BITBUCKET_ACCESS_TOKEN) is used.
    type: str
  username:
    description:
      - User for HTTP Basic authentication together with O(password).
      - With an Atlassian API token this is the Atlassian account e-mail address;
        with an app password it is the Bitbucket username.
      - On Data Center, the username of the owner of the personal HTTP access token in O(password). Data Center
        refuses project and repository tokens in Basic authentication; pass those as O(access_token).
      - Mutually exclusive with O(access_token) and O(client_id)/O(client_secret).
      - If not set, the environment variable E(BITBUCKET_USERNAME) is used.
    type: str
  password:
    description:
      - API token or app password for O(username). Not the account password, which Bitbucket refuses.
      - On Data Center, a personal HTTP access token of O(username).
      - If not set, the environment variable E(BITBUCKET_PASSWORD) is used.
    type: str
notes:
  - "Authentication: set exactly one of O(access_token), O(client_id) + O(client_secret), or O(username) + O(password).
    Options set in the task choose the method and only that method's missing options are read from the environment.
    With no option set, the environment variables are used in this order: E(BITBUCKET_ACCESS_TOKEN),
    E(BITBUCKET_CLIENT_ID) + E(BITBUCKET_CLIENT_SECRET), E(BITBUCKET_USERNAME) + E(BITBUCKET_PASSWORD)."
  - With O(client_id) and O(client_secret) the module takes an access token from the token cache shared with
    M(codeferry.bitbucket.oauth_token) and the P(codeferry.bitbucket.oauth_token#lookup) lookup, and requests one
    with the C(client_credentials) grant only when no cached token has at least 300 seconds left.
    If the API refuses the token (expired or revoked), the module requests a new one once and retries.
    This happens in check mode too, because minting changes nothing on Bitbucket and the module needs a token
    to read anything.
  - Bitbucket Data Center has no C(client_credentials) grant, so O(client_id) + O(client_secret) with a Data Center
    O(api_url) fail at once, before any request. Use an HTTP access token as O(access_token) instead, or an OAuth
    access token from M(codeferry.bitbucket.oauth_token) with O(codeferry.bitbucket.oauth_token#module:grant_type=refresh_token)
    after a one-time browser authorization with the C(codeferry.bitbucket.authorize) playbook.
  - When the API refuses a token given as O(access_token) with HTTP 401, the module drops that token from the token
    cache, if it is there, so that the next run of M(codeferry.bitbucket.oauth_token) gets a new one.
  - Set E(BITBUCKET_CLIENT_SECRET), E(BITBUCKET_ACCESS_TOKEN) and E(BITBUCKET_PASSWORD) in the environment of
    C(ansible-playbook), not with the C(environment) keyword of a task or play. Ansible puts those variables on
    the command line that runs the module, where C(ps) and C(-vvv) show them.
  - Requests answered with HTTP 429, 502, 503 or 504, and dropped connections, are retried up to 5 times with
    exponential backoff (0.5 to 8 seconds, with jitter), honouring C(Retry-After) (at most 60 seconds) when the
    server sends it, as Data Center does when its rate limiting is on.
'''

    # Client credentials, token endpoint, token cache and connection options: the oauth_token
    # module, the oauth_token lookup and the API modules.
    OAUTH = r'''
options:
  client_id:
    description:
      - Key of the Bitbucket OAuth consumer (Workspace settings, OAuth consumers).
      - On Data Center, the client ID of the incoming application link (Administration, Application links).
      - If not set, the environment variable E(BITBUCKET_CLIENT_ID) is used.
    type: str
  client_secret:
    description:
      - Secret of the OAuth consumer. Sent only to O(token_url), with HTTP Basic authentication on Bitbucket Cloud,
        and as the C(client_secret) form parameter (with C(client_id)) on Data Center, whose OAuth 2.0 provider
        reads no other client authentication.
      - On Data Center, the client secret of the incoming application link.
      - If not set, the environment variable E(BITBUCKET_CLIENT_SECRET) is used.
    type: str
  token_url:
    description:
      - OAuth 2.0 token endpoint.
      - If not set, the environment variable E(BITBUCKET_TOKEN_URL) is used (an empty one counts as not set).
      - If neither is set, Bitbucket Cloud's V(https://bitbucket.org/site/oauth2/access_token); or, when O(api_url) is a
        Data Center REST API root (C(https://HOST/CONTEXT/rest/api/1.0)), the token endpoint of that instance,
        C(https://HOST/CONTEXT/rest/oauth2/latest/token).
      - A URL whose path ends in C(/rest/oauth2/latest/token) or C(/rest/oauth2/1.0/token) is a Data Center token
        endpoint, whatever O(api_url) says; so is any URL when O(api_url) is a Data Center REST API root (a token
        endpoint behind a proxy path). Any other URL is treated as Bitbucket Cloud's.
    type: str
  cache:
    description:
      - Keep access tokens in the token cache, so that tasks, hosts and forks of a run share one token
        and a second run within the token's lifetime requests none.
      - When V(false), a new token is requested every time and nothing is written to disk.
    type: bool
    default: true
  cache_dir:
    description:
      - Directory of the token cache, created with mode C(0700) if missing (missing parents too, whatever the umask).
      - The directory must belong to the user running Ansible and be closed to others (C(0700)); a shared
        directory such as C(/tmp), or one that others can read, is refused, never C(chmod)-ed.
        No component of the path may be a symbolic link, and every parent must belong to that user or root and
        not be writable by others (a sticky directory such as C(/tmp) may be a parent).
      - Each OAuth consumer or application link (O(token_url) and O(client_id)) has one file for its own token and one per user cache
        entry (see O(codeferry.bitbucket.oauth_token#module:cache_entry)), mode C(0600), named after a SHA-256 hash.
        The secret is never part of the name or the file.
      - If not set, the environment variable E(BITBUCKET_TOKEN_CACHE_DIR) is used,
        else C(~/.cache/codeferry.bitbucket/tokens).
      - The cache holds live tokens; keep it on the controller and private to the user running Ansible.
    type: path
  validate_certs:
    description:
      - Verify the server's TLS certificate. Set O(ca_path) instead of disabling this for a private CA.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA certificates to trust instead of the system store.
      - With O(validate_certs=true), a missing file, a directory, or a file without a PEM certificate
        fails the task before any request.
    type: path
  timeout:
    description:
      - Timeout in seconds for each HTTP request, from V(1) to V(3600).
    type: int
    default: 30
'''

    # Configuration sources the lookup adds to OAUTH.
    OAUTH_PLUGINS = r'''
options:
  client_id:
    env:
      - name: BITBUCKET_CLIENT_ID
  client_secret:
    env:
      - name: BITBUCKET_CLIENT_SECRET
  token_url:
    env:
      - name: BITBUCKET_TOKEN_URL
  cache_dir:
    env:
      - name: BITBUCKET_TOKEN_CACHE_DIR
'''

    # The grant options of the oauth_token module and lookup.
    GRANT = r'''
options:
  grant_type:
    description:
      - How to get a token when the cache has none with O(min_ttl) seconds left.
      - V(client_credentials) acts as the OAuth consumer itself. Bitbucket Cloud only.
        Bitbucket Data Center has no such grant, so against Data Center it fails at once, before any request,
        with a message that says what to use instead (an HTTP access token, or the authorization code flow).
      - V(refresh_token) gets a token acting as the user who authorized the consumer, from the refresh token in the
        cache entry O(cache_entry) (saved by the C(codeferry.bitbucket.authorize) playbook), or from O(refresh_token).
      - V(authorization_code) exchanges O(code) from the browser authorization step. A code is always exchanged,
        even when the cache holds a valid token, because it asks for a new grant; later runs use V(refresh_token).
      - On Data Center, V(authorization_code) (with PKCE, see O(code_verifier)) and V(refresh_token) work as on Cloud;
        Data Center rotates refresh tokens on every use, and the newest one is saved in the cache entry before the
        task returns.
      - The consumer's token and users' tokens are cached apart and never stand in for each other.
    type: str
    choices: [client_credentials, refresh_token, authorization_code]
    default: client_credentials
  refresh_token:
    description:
      - Refresh token for O(grant_type=refresh_token). A newer refresh token in the cache entry is tried first;
        without this option the cached one is used.
    type: str
  code:
    description:
      - Authorization code for O(grant_type=authorization_code). Codes are single-use and short-lived.
    type: str
  code_verifier:
    description:
      - PKCE (RFC 7636) code verifier for O(grant_type=authorization_code), the secret whose C(code_challenge) went
        into the authorization request that gave O(code). Sent with O(code) only when set.
      - 43 to 128 characters of C(A-Z), C(a-z), C(0-9) and C(-._~). The C(codeferry.bitbucket.authorize) playbook
        generates one for every Data Center authorization and sends its C(S256) challenge
        (P(codeferry.bitbucket.pkce_challenge#filter)).
      - Not allowed with other grants.
    type: str
  redirect_uri:
    description:
      - Redirect URI sent with O(code) when the authorization request used one. Data Center requires it when the
        authorization request had one, and it must be the same.
    type: str
  cache_entry:
    description:
      - Name of the cache entry that holds a user's token, for O(grant_type=refresh_token) and
        O(grant_type=authorization_code). Give each person who authorizes the same consumer on one controller an entry
        of their own. If not set, V(default) is used.
      - 1 to 64 letters, digits or C(_.@+-). Not allowed with O(grant_type=client_credentials), because the
        consumer has one entry of its own.
    type: str
  min_ttl:
    description:
      - Minimum number of seconds a cached token must still be valid to be returned.
      - From V(0) to V(86399). Bitbucket Cloud tokens live 7200 seconds and Data Center's typically 3600,
        so a value at least that large renews the token on every run or call.
    type: int
    default: 300
  force:
    description:
      - Get a new access token now, even if the cache holds one with O(min_ttl) seconds left (for example after
        Bitbucket revoked it). The cached refresh token is tried first.
    type: bool
    default: false
'''

    # The group's options that the oauth_token module accepts but does not use, so that module_defaults
    # for group/codeferry.bitbucket.bitbucket can set them once for every module of the collection.
    TOKEN_MODULE_GROUP = r'''
options:
  api_url:
    description:
      - Used only to find the token endpoint and its flavour. A Bitbucket Data Center REST API root
        (C(https://HOST/CONTEXT/rest/api/1.0) or C(/rest/api/latest)) makes O(token_url) a Data Center endpoint,
        by default C(https://HOST/CONTEXT/rest/oauth2/latest/token); any other value leaves it at Bitbucket Cloud's.
      - Accepted for C(module_defaults) of the action group too, so a Data Center O(api_url) set there serves
        this module as well.
      - If not set, the environment variable E(BITBUCKET_API_URL) is used (an empty one counts as not set),
        else V(https://api.bitbucket.org/2.0).
    type: str
    default: https://api.bitbucket.org/2.0
  access_token:
    description:
      - Not used; accepted for C(module_defaults) of the action group. This module always authenticates
        with O(client_id) and O(client_secret).
    type: str
  username:
    description:
      - Not used; accepted for C(module_defaults) of the action group.
    type: str
  password:
    description:
      - Not used; accepted for C(module_defaults) of the action group.
    type: str
  workspace:
    description:
      - Not used; accepted for C(module_defaults) of the action group.
    type: str
'''
