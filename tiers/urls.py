from django.urls import path
from rest_framework.routers import SimpleRouter

from tiers import views

router = SimpleRouter()
router.register("members", views.MemberTierViewSet, basename="member-tier")

urlpatterns = [
    path("tiers/", views.TierLadderView.as_view(), name="tiers"),
    path("me/tier/", views.MyTierView.as_view(), name="me-tier"),
    *router.urls,
]
