"""Integration tests: real twistd nodes on 127.0.0.1."""
