"""The demo: a synthetic camera node and the supervisor that runs it with the perception node."""
