from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from loyalty.api import ID_PATTERN
from members import views

router = SimpleRouter()
router.register("members", views.MemberViewSet, basename="member")
router.register("tags", views.TagViewSet, basename="tag")
router.register("stores", views.StoreViewSet, basename="store")
router.register("messages", views.MessageLogViewSet, basename="message")

urlpatterns = [
    path("auth/otp", views.OtpView.as_view(), name="otp"),
    path("auth/member-token", views.MemberTokenView.as_view(), name="member-token"),
    path("auth/member-token/refresh", views.MemberTokenRefreshView.as_view(), name="member-token-refresh"),
    path("auth/member-token/logout", views.MemberTokenLogoutView.as_view(), name="member-token-logout"),
    path("me/", views.MeView.as_view(), name="me"),
    path("me/messages/", views.MyMessagesView.as_view({"get": "list"}), name="me-messages"),
    re_path(
        rf"^me/messages/(?P<pk>{ID_PATTERN})/read/$",
        views.MyMessagesView.as_view({"post": "read"}, detail=True),
        name="me-message-read",
    ),
    *router.urls,
]
