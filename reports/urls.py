from django.urls import path

from reports import views

urlpatterns = [
    path("reports/rfm/", views.RfmReportView.as_view(), name="report-rfm"),
]
