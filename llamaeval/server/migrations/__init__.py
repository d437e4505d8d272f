"""Versioned schema migrations of the server's databases (numbered SQL files, applied in order)."""
