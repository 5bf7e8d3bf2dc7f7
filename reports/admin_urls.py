"""Pages of the reports app inside the admin (behind its login): the dashboard. Included by loyalty/urls.py
before the admin's own URLs."""

from django.contrib import admin
from django.urls import path

from reports.dashboard import dashboard_view

urlpatterns = [
    path("dashboard/", admin.site.admin_view(dashboard_view), name="reports-dashboard"),
]
