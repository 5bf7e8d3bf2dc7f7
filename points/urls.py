from django.urls import path
from rest_framework.routers import SimpleRouter

from points import views

router = SimpleRouter()
router.register("purchases", views.PurchaseViewSet, basename="purchase")
router.register("members", views.MemberPointsViewSet, basename="member-points")
router.register("rewards", views.RewardViewSet, basename="reward")
router.register("redemptions", views.RedemptionViewSet, basename="redemption")
router.register("earning-rules", views.EarningRuleViewSet, basename="earning-rule")
router.register("adjustment-requests", views.AdjustmentRequestViewSet, basename="adjustment-request")

urlpatterns = [
    path("events/", views.EventView.as_view(), name="events"),
    path("me/points/", views.MyPointsView.as_view(), name="me-points"),
    path("me/points/ledger/", views.MyLedgerView.as_view({"get": "list"}), name="me-points-ledger"),
    path("me/points/transfers/", views.MyTransfersView.as_view(), name="me-points-transfers"),
    path("me/household/", views.MyHouseholdView.as_view(), name="me-household"),
    path("me/sign-in/", views.MySignInView.as_view(), name="me-sign-in"),
    path("me/redemptions/", views.MyRedemptionsView.as_view({"get": "list", "post": "create"}), name="me-redemptions"),
    *router.urls,
]
