from django.contrib import admin
from django.urls import path

from benchsite import views

urlpatterns = [
    path("", views.home),
    path("health", views.health),
    path("admin/", admin.site.urls),
]
