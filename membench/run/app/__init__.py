"""`membench run --app`: the user's own Celery task under each pool and concurrency, on a
fresh worker of the user's app per row (spec -> worker/launcher -> load -> runner -> report,
sizing)."""
