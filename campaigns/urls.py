from django.urls import path
from rest_framework.routers import SimpleRouter

from campaigns import views, views_coupons

router = SimpleRouter()
router.register("campaigns", views.CampaignViewSet, basename="campaign")
router.register("coupon-templates", views_coupons.CouponTemplateViewSet, basename="coupon-template")
router.register("coupons", views_coupons.CouponViewSet, basename="coupon")
router.register("coupon-batches", views_coupons.CouponBatchViewSet, basename="coupon-batch")
router.register("members", views_coupons.MemberCouponViewSet, basename="member-coupons")

urlpatterns = [
    path("me/coupons/", views_coupons.MyCouponsView.as_view({"get": "list"}), name="me-coupons"),
    *router.urls,
]
