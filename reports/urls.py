from django.urls import path

from reports import views, views_core

urlpatterns = [
    path("reports/rfm/", views.RfmReportView.as_view(), name="report-rfm"),
    path("reports/points/", views_core.PointsReportView.as_view(), name="report-points"),
    path("reports/liability/", views_core.LiabilityReportView.as_view(), name="report-liability"),
    path("reports/members/", views_core.MembersReportView.as_view(), name="report-members"),
    path("reports/segment-moves/", views_core.SegmentMovesReportView.as_view(), name="report-segment-moves"),
]
