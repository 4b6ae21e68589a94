"""Records in, answers out: pure functions and value objects, no I/O, no printing."""
