"""Liveness and readiness probes for the load balancer and the orchestrator."""

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@never_cache
@require_GET
def healthz(request):
    """The process is up and answering. Touches nothing else."""
    return JsonResponse({"status": "ok"})


def _broker_state():
    if not settings.REDIS_URL:
        return "eager"  # no broker configured: tasks run in-process
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        return "ok"
    except redis.RedisError:
        return "unavailable"


@never_cache
@require_GET
def readyz(request):
    """Ready when the database answers (503 otherwise). The broker's state is reported but not fatal: the API's
    writes do not need it (tasks are enqueued after commit and retried by the jobs)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception:  # any database failure means not ready
        database = "unavailable"
    body = {"status": "ok" if database == "ok" else "unavailable", "database": database, "broker": _broker_state()}
    return JsonResponse(body, status=200 if database == "ok" else 503)
