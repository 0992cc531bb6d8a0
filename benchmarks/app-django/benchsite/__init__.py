"""The benchmark's heavyweight app: a small Django project served by gunicorn."""
