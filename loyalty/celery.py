"""The Celery app: Redis as broker, configured from Django settings (CELERY_*); eager when REDIS_URL is unset."""

import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from loyalty.log_masking import add_mask_to_handlers

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyalty.settings")

app = Celery("loyalty")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _mask_phones_in_worker_logs(logger, **kwargs):
    """A worker replaces the root logger's handlers with its own: they mask phone numbers too."""
    add_mask_to_handlers(logger)
