from rest_framework.routers import SimpleRouter

from campaigns import views

router = SimpleRouter()
router.register("campaigns", views.CampaignViewSet, basename="campaign")

urlpatterns = router.urls
