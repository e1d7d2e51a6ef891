"""celery-chaos: bring a Celery + Redis stack up, hurt it, record what clients saw, and prove what happened."""

__version__ = "0.1.0"
