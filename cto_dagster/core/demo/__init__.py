"""The demo: the built-in demo agent and the embedded sample repository."""
