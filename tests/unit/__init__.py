"""Unit tests: logic and the database, no processes, sockets, containers or browsers."""
