"""The dashboard's link on the admin index (the page itself is reports.dashboard)."""

from django.contrib import admin

# The admin's own admin/index.html comes first in the template search (django.contrib.admin is the first app), so
# the index names the template that adds the dashboard's link; it extends the admin's index.
admin.site.index_template = "admin/reports/index.html"
