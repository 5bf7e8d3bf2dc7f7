# One image for every process of the service: web (gunicorn, the default), migrate, Celery worker and beat.
FROM python:3.11-slim

# The image is the production artefact: its processes start with the production checks (they refuse to start
# without SECRET_KEY, ALLOWED_HOSTS and a delivering SMS backend). Pass ENVIRONMENT=development to try it out.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ENVIRONMENT=production

WORKDIR /app

RUN groupadd --system app && useradd --system --gid app --home-dir /app --no-create-home app

# Every package pinned with its hashes, transitive ones included (`make lock`): pip refuses anything else.
COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

COPY --chown=app:app . .
USER app

# Static files are collected into the image (served by WhiteNoise). The settings need production values to load;
# the key is random, made for this build step only and never kept (a key written here would be a published one).
RUN SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    ALLOWED_HOSTS=build \
    SMS_BACKEND=loyalty.messaging.HttpSmsBackend \
    python manage.py collectstatic --noinput

EXPOSE 8000
# The access log masks phone numbers (?phone=13800138000 is logged as ?phone=138****8000): loyalty.access_log.
CMD ["gunicorn", "loyalty.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-", \
     "--logger-class", "loyalty.access_log.GunicornLogger"]
