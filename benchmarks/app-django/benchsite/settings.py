"""Settings of the benchmark's Django project. The host's address, port and pidfile come from
config/app.ini, rendered per host at deploy time by every tool; the release id is the name of
the releases/<id> directory this project was unpacked into."""

import configparser
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent  # releases/<id>, symlinks resolved
RELEASE = BASE_DIR.name

_config = configparser.ConfigParser()
_config.read(BASE_DIR / "config" / "app.ini")
APP = _config["app"] if _config.has_section("app") else {}

# A placeholder: the app keeps no sessions or signed data worth protecting.
SECRET_KEY = "benchmark-only-not-a-secret"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchsite.urls"
WSGI_APPLICATION = "benchsite.wsgi.application"

# What a typical project loads at boot, so a worker's start-up costs what a real app's does.
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "benchsite",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
# Never opened by /health or the home page; lives in shared/, outside the release.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(BASE_DIR / "run" / "db.sqlite3"),
    }
}
STATIC_URL = "static/"
USE_TZ = True
