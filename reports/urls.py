from django.urls import path, re_path

from loyalty.api import ID_PATTERN
from reports import views, views_alerts

urlpatterns = [
    path("reports/rfm/", views.RfmReportView.as_view(), name="report-rfm"),
    path("alerts/", views_alerts.AlertViewSet.as_view({"get": "list"}), name="alert-list"),
    re_path(
        rf"^alerts/(?P<pk>{ID_PATTERN})/acknowledge/$",
        views_alerts.AlertViewSet.as_view({"post": "acknowledge"}),
        name="alert-acknowledge",
    ),
]
