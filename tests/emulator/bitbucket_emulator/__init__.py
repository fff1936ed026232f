"""A local Bitbucket Cloud emulator (OAuth 2.0, REST 2.0, git over HTTPS) for tests, demos and benchmarks."""
