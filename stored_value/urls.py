from django.urls import path
from rest_framework.routers import SimpleRouter

from stored_value import views

router = SimpleRouter()
router.register("members", views.MemberStoredValueViewSet, basename="member-stored-value")
router.register("stored-value/top-ups", views.TopUpViewSet, basename="stored-value-top-up")
router.register("stored-value/top-up-rules", views.TopUpRuleViewSet, basename="stored-value-top-up-rule")
router.register("stored-value/payments", views.PaymentViewSet, basename="stored-value-payment")

urlpatterns = [
    path("stored-value/withdrawals/", views.WithdrawalView.as_view(), name="stored-value-withdrawals"),
    path("me/stored-value/", views.MyStoredValueView.as_view(), name="me-stored-value"),
    path(
        "me/stored-value/ledger/",
        views.MyStoredValueLedgerView.as_view({"get": "list"}),
        name="me-stored-value-ledger",
    ),
    path("me/stored-value/pin/", views.MyPinView.as_view(), name="me-stored-value-pin"),
    *router.urls,
]
