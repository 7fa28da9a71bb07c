"""`membench stack`'s engine: the compose stack's services as supervised local processes."""
