from django.urls import path

from reports import views, views_behaviour

urlpatterns = [
    path("reports/rfm/", views.RfmReportView.as_view(), name="report-rfm"),
    path("reports/repurchase/", views_behaviour.RepurchaseReportView.as_view(), name="report-repurchase"),
    path("reports/retention/", views_behaviour.RetentionReportView.as_view(), name="report-retention"),
    path("reports/basket/", views_behaviour.BasketReportView.as_view(), name="report-basket"),
    path("reports/behaviour/", views_behaviour.BehaviourReportView.as_view(), name="report-behaviour"),
    path("reports/top/", views_behaviour.TopReportView.as_view(), name="report-top"),
    path("reports/campaigns/", views_behaviour.CampaignsReportView.as_view(), name="report-campaigns"),
]
