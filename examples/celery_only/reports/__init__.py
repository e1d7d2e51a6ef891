"""A reports service: plain Celery, no web API. Producers elsewhere call ``send_task`` by name."""
