"""Task programs that only the tests run: each is a small script run as ``python FILE``."""
