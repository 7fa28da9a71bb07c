"""The scheduled load generator: fires scenarios on a TOML schedule against running workers."""
