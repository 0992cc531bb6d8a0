"""The benchmark app's pages: /health for the tools' checks, and a home page. The redeploy
scenario changes this file (a comment appended at the end)."""

import socket

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def health(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok", "version": settings.RELEASE})


def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "home.html",
        {"release": settings.RELEASE, "host": socket.gethostname(), "app": settings.APP},
    )
