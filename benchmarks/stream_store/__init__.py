"""Stream store benchmark: the Redis store against the in-memory one (see `benchmark`)."""
