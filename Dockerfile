# One image for every process of the service: web (gunicorn, the default), migrate, Celery worker and beat.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

RUN groupadd --system app && useradd --system --gid app --home-dir /app --no-create-home app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=app:app . .
USER app

# Static files are collected into the image (served by WhiteNoise). The settings need production values to load;
# this key exists only for this build step and is never used at run time.
RUN ENVIRONMENT=production \
    SECRET_KEY=build-only-collectstatic-key-not-used-at-run-time-0123456789 \
    ALLOWED_HOSTS=build \
    SMS_BACKEND=loyalty.messaging.HttpSmsBackend \
    python manage.py collectstatic --noinput

EXPOSE 8000
# The access log masks phone numbers (?phone=13800138000 is logged as ?phone=138****8000): loyalty.access_log.
CMD ["gunicorn", "loyalty.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-", \
     "--logger-class", "loyalty.access_log.GunicornLogger"]
