from django.urls import path, re_path

from loyalty.api import ID_PATTERN
from reports import views, views_alerts, views_behaviour, views_core, views_coupons_report, views_stored_value

urlpatterns = [
    path("reports/rfm/", views.RfmReportView.as_view(), name="report-rfm"),
    path("alerts/", views_alerts.AlertViewSet.as_view({"get": "list"}), name="alert-list"),
    re_path(
        rf"^alerts/(?P<pk>{ID_PATTERN})/acknowledge/$",
        views_alerts.AlertViewSet.as_view({"post": "acknowledge"}),
        name="alert-acknowledge",
    ),
    path("reports/points/", views_core.PointsReportView.as_view(), name="report-points"),
    path("reports/liability/", views_core.LiabilityReportView.as_view(), name="report-liability"),
    path("reports/members/", views_core.MembersReportView.as_view(), name="report-members"),
    path("reports/stored-value/", views_stored_value.StoredValueReportView.as_view(), name="report-stored-value"),
    path("reports/coupons/", views_coupons_report.CouponReportView.as_view(), name="report-coupons"),
    path("reports/segment-moves/", views_core.SegmentMovesReportView.as_view(), name="report-segment-moves"),
    path("reports/repurchase/", views_behaviour.RepurchaseReportView.as_view(), name="report-repurchase"),
    path("reports/retention/", views_behaviour.RetentionReportView.as_view(), name="report-retention"),
    path("reports/basket/", views_behaviour.BasketReportView.as_view(), name="report-basket"),
    path("reports/behaviour/", views_behaviour.BehaviourReportView.as_view(), name="report-behaviour"),
    path("reports/top/", views_behaviour.TopReportView.as_view(), name="report-top"),
    path("reports/campaigns/", views_behaviour.CampaignsReportView.as_view(), name="report-campaigns"),
]
