"""Integration tests: real processes, git repositories, sockets, containers and SMTP."""
