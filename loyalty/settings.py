"""Settings for the loyalty service, read from the environment (one file, twelve-factor style).

Operators configure the service with environment variables; marketers configure the business (rules, tiers,
policies) in the database. ENVIRONMENT must be chosen (development, test or production): without it no process
starts, so a production host that forgot it fails closed instead of running with DEBUG and the public development
key. `ENVIRONMENT=production` turns on the production checks: the process refuses to start with DEBUG on, with a
short or publicly known secret key, or without ALLOWED_HOSTS.
"""

import re
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
DEVELOPMENT_SECRET_KEY = "insecure-development-key-change-me"  # noqa: S105 - refused in production
# Keys that were ever published (in this repository, its documentation or its images): a production process refuses
# them, whatever their length, since anyone can sign sessions and member tokens with them.
KNOWN_PUBLIC_SECRET_KEYS = frozenset(
    {
        DEVELOPMENT_SECRET_KEY,
        "build-only-collectstatic-key-not-used-at-run-time-0123456789",  # the Dockerfile's build step (published)
        "ssssssssssssssssssss0123456789abcdefghijklmnopqrstuvwxyz",  # the test suite's production key (published)
    }
)

env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"))

# No default: development (DEBUG, the public development key) must be chosen, never fallen into. `make run` chooses
# development, `make test` and pytest test; a deployment sets production.
ENVIRONMENTS = ("development", "test", "production")
ENVIRONMENT = env.str("ENVIRONMENT", default="")
if not ENVIRONMENT:
    raise ImproperlyConfigured(
        "ENVIRONMENT is not set: set it to development, test or production (to try the service out, "
        "`export ENVIRONMENT=development` or put ENVIRONMENT=development in .env; `make run` and `make test` set it "
        "themselves). Nothing defaults to development, so that a deployment without it fails closed."
    )
if ENVIRONMENT not in ENVIRONMENTS:
    raise ImproperlyConfigured(f"ENVIRONMENT must be development, test or production, not {ENVIRONMENT!r}.")
PRODUCTION = ENVIRONMENT == "production"

SECRET_KEY = env.str("SECRET_KEY", default=DEVELOPMENT_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off in production (unset DEBUG or set DEBUG=false).")
    if (
        SECRET_KEY in KNOWN_PUBLIC_SECRET_KEYS
        or SECRET_KEY.startswith("django-insecure-")  # what `django-admin startproject` writes for development
        or len(SECRET_KEY) < 50
        or len(set(SECRET_KEY)) < 5
    ):
        raise ImproperlyConfigured(
            "Set SECRET_KEY to a random value of at least 50 characters in production, not a development or "
            "published key: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("Set ALLOWED_HOSTS in production.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files served by the project: /api/docs/ works without internet
    "django_celery_beat",
    "loyalty",
    "members",
    "points",
    "tiers",
    "stored_value",
    "campaigns",
    "reports",
]

MIDDLEWARE = [
    "loyalty.api.DatabaseTimeoutsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    *(["whitenoise.middleware.WhiteNoiseMiddleware"] if PRODUCTION else []),  # runserver serves static in dev
    "loyalty.middleware.LazySessionMiddleware",  # Django's; without a session cookie, the store made on first use
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "loyalty.middleware.LazyMessageMiddleware",  # Django's, its storage made on first use
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "loyalty.api.ApiErrorMiddleware",
]

ROOT_URLCONF = "loyalty.urls"
WSGI_APPLICATION = "loyalty.wsgi.application"
ASGI_APPLICATION = "loyalty.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Searched before the apps' templates: loyalty/templates/admin/base_site.html adds the language switch to
        # every admin page (an app's own copy would come after django.contrib.admin's and never be used).
        "DIRS": [BASE_DIR / "loyalty" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite in the project folder is the embedded default for trying the service out; production and CI use
# PostgreSQL (DATABASE_URL=postgresql://user@host:5432/name).
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60 if PRODUCTION else 0))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Django's PostgreSQL backend (psycopg 3) whose health check at a request's first query polls the connection's
# socket instead of sending `SELECT 1` (a round trip per request), and does the round trip only when the socket
# has something to read (the server or the pooler ended the session) or psycopg knows the connection is not idle
# (loyalty/backends/postgresql/base.py; measured in bench/RESULTS.md; docs/SCALING.md §3).
POSTGRESQL_ENGINE = "loyalty.backends.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = POSTGRESQL_ENGINE
# How the web and workers reach PostgreSQL (docs/SCALING.md): "direct" or a pooler in session mode (the default), or
# "transaction" for PgBouncer in transaction mode, where consecutive transactions of one Django connection may run
# on different server sessions: no server-side cursors (QuerySet.iterator() would DECLARE a cursor that the next
# transaction cannot see), no server-side prepared statements (psycopg's prepare_threshold off; Django's default
# client-side binding prepares none anyway) and no session settings (the web's timeouts come from the database
# role then: ALTER ROLE ... SET statement_timeout / lock_timeout).
DATABASE_POOL_MODE = env.str("DATABASE_POOL_MODE", default="direct")
if DATABASE_POOL_MODE not in ("direct", "transaction"):
    raise ImproperlyConfigured("DATABASE_POOL_MODE must be 'direct' or 'transaction'.")
if DATABASE_POOL_MODE == "transaction" and DATABASES["default"]["ENGINE"] == POSTGRESQL_ENGINE:
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Wait for the writer lock instead of failing at once when the demo server and a command write together.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
# A read replica for reports (docs/SCALING.md): the report views' ORM reads go there (loyalty.db_routers); every
# write and everything else stays on default. The same pool mode as the primary; in tests it mirrors default.
REPLICA_DATABASE_URL = env.str("REPLICA_DATABASE_URL", default="")
if REPLICA_DATABASE_URL:
    DATABASES["replica"] = env.db_url_config(REPLICA_DATABASE_URL)
    if DATABASES["replica"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["replica"]["ENGINE"] = POSTGRESQL_ENGINE
    DATABASES["replica"].setdefault("CONN_MAX_AGE", DATABASES["default"]["CONN_MAX_AGE"])
    DATABASES["replica"]["CONN_HEALTH_CHECKS"] = True
    for key in ("DISABLE_SERVER_SIDE_CURSORS", "OPTIONS"):
        if key in DATABASES["default"] and key not in DATABASES["replica"]:
            DATABASES["replica"][key] = DATABASES["default"][key]
    if ENVIRONMENT == "test":
        DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["loyalty.db_routers.ReportReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# PostgreSQL limits on the web's sessions, in seconds: how long a request's statement waits for a lock, and how
# long any one statement may run (0: not set, the server's own setting applies). A request past either answers 503
# `temporarily_unavailable` with a Retry-After header, its transaction rolled back, instead of holding a worker.
# They are set on connections opened while serving a request (loyalty.api.DatabaseTimeoutsMiddleware); Celery
# workers and management commands (the nightly jobs, imports) open theirs outside any request and run without them.
# The test suite runs 30-thread races on a loaded 2-core machine: its default waits longer (the fault tests set
# their own small limits).
WEB_DB_LOCK_TIMEOUT_SECONDS = env.float("WEB_DB_LOCK_TIMEOUT_SECONDS", default=60 if ENVIRONMENT == "test" else 5)
WEB_DB_STATEMENT_TIMEOUT_SECONDS = env.float(
    "WEB_DB_STATEMENT_TIMEOUT_SECONDS", default=120 if ENVIRONMENT == "test" else 15
)
if WEB_DB_LOCK_TIMEOUT_SECONDS < 0 or WEB_DB_STATEMENT_TIMEOUT_SECONDS < 0:
    raise ImproperlyConfigured("WEB_DB_LOCK_TIMEOUT_SECONDS and WEB_DB_STATEMENT_TIMEOUT_SECONDS must be 0 or more.")

AUTH_USER_MODEL = "members.StaffUser"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="zh-hans")
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Shanghai")  # the business time zone
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

REDIS_URL = env.str("REDIS_URL", default="")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        # A cache that is down must cost a request at most a second (rate limits then let it through).
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# Celery: Redis as broker; with REDIS_URL unset tasks run eagerly in-process, so the embedded default needs no
# broker. Tasks are acknowledged after they run, so a task whose worker died is delivered again: with Redis, once
# it has been unacknowledged for CELERY_VISIBILITY_TIMEOUT seconds (longer than any task may run). Publishing
# fails fast when the broker is down or hangs (connect and socket timeouts, one retry), so no request or job
# waits long on the broker.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECT_TIMEOUT", default=2)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=6 * 3600),
    "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
    "socket_timeout": env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=2),
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": env.int("CELERY_PUBLISH_MAX_RETRIES", default=1),
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# How long a process keeps the small configuration tables (points policy, earning rules, tiers, growth policies,
# API keys) before reading them again; a change made in this process applies at once (loyalty/config_cache.py).
CONFIG_CACHE_SECONDS = env.int("CONFIG_CACHE_SECONDS", default=30)

# Nightly jobs: seconds each chunk pauses before its work, to spread a big job's load on the primary (0: none).
JOB_CHUNK_PAUSE_SECONDS = env.float("JOB_CHUNK_PAUSE_SECONDS", default=0)

# Engagement events (sign-in, share, review, custom) happen now: a client's occurred_at may differ from the server's
# clock by at most this many seconds either way (clock skew), else 400 invalid; within it the server's now counts.
EVENT_CLOCK_SKEW_SECONDS = env.int("EVENT_CLOCK_SKEW_SECONDS", default=300)

# Hard ceilings on the role limits of the points policy: a policy version above one is refused for everyone, and the
# limit in force is never above it, whatever a policy row says (points adjusted per entry by a clerk / a marketer,
# points a member may transfer per day, and the daily adjustment totals below). Only an admin changes the limits
# themselves, within these.
MAX_CLERK_ADJUSTMENT_LIMIT = env.int("MAX_CLERK_ADJUSTMENT_LIMIT", default=5000)
MAX_MARKETER_ADJUSTMENT_LIMIT = env.int("MAX_MARKETER_ADJUSTMENT_LIMIT", default=50000)
MAX_TRANSFER_DAILY_LIMIT = env.int("MAX_TRANSFER_DAILY_LIMIT", default=10000)
# The daily adjustment totals: points a clerk / a marketer may adjust per business day across all members, points
# all staff may adjust one member per business day, without a manager's approval.
MAX_CLERK_DAILY_ADJUSTMENT_TOTAL = env.int("MAX_CLERK_DAILY_ADJUSTMENT_TOTAL", default=20000)
MAX_MARKETER_DAILY_ADJUSTMENT_TOTAL = env.int("MAX_MARKETER_DAILY_ADJUSTMENT_TOTAL", default=200000)
MAX_MEMBER_DAILY_ADJUSTMENT_TOTAL = env.int("MAX_MEMBER_DAILY_ADJUSTMENT_TOTAL", default=200000)

# Minutes after a coupon was used during which a clerk may undo it (a till's mistake), SPEC §10; later a refund
# of the order returns it.
COUPON_UNDO_MINUTES = env.int("COUPON_UNDO_MINUTES", default=10)
# An uploaded list of members for a coupon batch: its size (under DATA_UPLOAD_MAX_MEMORY_SIZE, which the API
# refuses before any view) and its rows; larger lists go in several uploads.
COUPON_LIST_MAX_BYTES = env.int("COUPON_LIST_MAX_BYTES", default=2_000_000)
COUPON_LIST_MAX_ROWS = env.int("COUPON_LIST_MAX_ROWS", default=100_000)

# Days an idempotency record (a client write's key and first answer, replayed to a retry) is kept before the
# nightly purge_idempotency job deletes it. SPEC §2 keeps keys at least 30 days: a shorter setting is refused.
IDEMPOTENCY_RETENTION_DAYS = env.int("IDEMPOTENCY_RETENTION_DAYS", default=30)
if IDEMPOTENCY_RETENTION_DAYS < 30:
    raise ImproperlyConfigured(
        f"IDEMPOTENCY_RETENTION_DAYS must be at least 30 days (SPEC §2), not {IDEMPOTENCY_RETENTION_DAYS}."
    )

# The client's address (loyalty/network.py): X-Forwarded-For is trusted only behind this many proxies of ours, each
# appending the address it saw (DRF's NUM_PROXIES). 0, the default: the header is ignored and REMOTE_ADDR is the
# client; set it to the number of reverse proxies / load balancers in front of the service.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)
if NUM_PROXIES < 0:
    raise ImproperlyConfigured("NUM_PROXIES must be 0 or more.")

# Staff logins (the API's staff token and the admin login page, loyalty/login_guard.py): attempts per client address
# and per username ("N/sec|min|hour|day", 429 throttled beyond), and the lock of a username after
# STAFF_LOGIN_MAX_FAILURES failed passwords within STAFF_LOGIN_FAILURE_WINDOW_MINUTES: every login of it is refused
# (429 login_locked, whatever the password) for STAFF_LOGIN_LOCK_MINUTES, or until an admin unlocks it.
STAFF_LOGIN_RATE = env.str("STAFF_LOGIN_RATE", default="20/min")
STAFF_LOGIN_USERNAME_RATE = env.str("STAFF_LOGIN_USERNAME_RATE", default="10/min")
STAFF_LOGIN_MAX_FAILURES = env.int("STAFF_LOGIN_MAX_FAILURES", default=10)
STAFF_LOGIN_FAILURE_WINDOW = timedelta(minutes=env.int("STAFF_LOGIN_FAILURE_WINDOW_MINUTES", default=15))
STAFF_LOGIN_LOCK_DURATION = timedelta(minutes=env.int("STAFF_LOGIN_LOCK_MINUTES", default=15))
if STAFF_LOGIN_MAX_FAILURES < 1:
    raise ImproperlyConfigured("STAFF_LOGIN_MAX_FAILURES must be 1 or more.")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "loyalty.authentication.ApiKeyAuthentication",
        "loyalty.authentication.BearerTokenAuthentication",
        "loyalty.authentication.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["loyalty.api.IsStaffOrClientApp"],
    "DEFAULT_PAGINATION_CLASS": "loyalty.api.IdCursorPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PARSER_CLASSES": ["loyalty.api.JSONParser"],  # with a limit on nesting
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "loyalty.api.RememberingContentNegotiation",  # DRF's, its choices kept
    "EXCEPTION_HANDLER": "loyalty.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"staff_login": STAFF_LOGIN_RATE},
    "NUM_PROXIES": NUM_PROXIES,
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
    "DATETIME_FORMAT": "iso-8601",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Loyalty API",
    "DESCRIPTION": "Members, points, tiers and campaigns for merchants with many stores.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # /api/docs/ takes Swagger UI from the project's static files (drf-spectacular-sidecar), not from a CDN: a shop's
    # intranet has no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Choice sets that share a field name get their own component names (else "SourceCf5Enum" and a warning).
    "ENUM_NAME_OVERRIDES": {
        "StoredOrLiveSourceEnum": ["stored", "live"],  # behaviour reports: a stored result or computed now
        "LiabilitySourceEnum": ["snapshot", "accounts", "ledger"],  # the liability report: where its figures came from
        "StoredValueEntryKindEnum": "stored_value.models.EntryKind",
        "RewardKindEnum": "points.models.RewardKind",
        "CouponKindEnum": "campaigns.models_coupons.CouponKind",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "loyalty.api.document_unavailable",
        "loyalty.api.document_common_errors",
    ],
}

# Authentication lifetimes and limits (operator settings).
STAFF_TOKEN_TTL = timedelta(hours=env.int("STAFF_TOKEN_TTL_HOURS", default=12))
MEMBER_ACCESS_TOKEN_TTL = timedelta(minutes=env.int("MEMBER_ACCESS_TOKEN_TTL_MINUTES", default=60))
MEMBER_REFRESH_TOKEN_TTL = timedelta(days=env.int("MEMBER_REFRESH_TOKEN_TTL_DAYS", default=30))
OTP_TTL = timedelta(minutes=env.int("OTP_TTL_MINUTES", default=5))
OTP_MAX_ATTEMPTS = env.int("OTP_MAX_ATTEMPTS", default=5)
OTP_RESEND_INTERVAL = timedelta(seconds=env.int("OTP_RESEND_INTERVAL_SECONDS", default=60))
OTP_MAX_PER_PHONE_PER_HOUR = env.int("OTP_MAX_PER_PHONE_PER_HOUR", default=5)
OTP_MAX_PER_IP_PER_HOUR = env.int("OTP_MAX_PER_IP_PER_HOUR", default=30)
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="CN")

# Message backends per channel. The outbox backend records the message and keeps its body whole (development);
# production backends keep bodies with one-time codes masked.
MESSAGE_BACKENDS = {
    "sms": env.str("SMS_BACKEND", default="loyalty.messaging.OutboxBackend"),
    "email": env.str("EMAIL_MESSAGE_BACKEND", default="loyalty.messaging.OutboxBackend"),
    "wechat": env.str("WECHAT_BACKEND", default="loyalty.messaging.OutboxBackend"),
    "inbox": "loyalty.messaging.InboxBackend",  # stored: the member reads it at /api/v1/me/messages/
}
SMS_HTTP_URL = env.str("SMS_HTTP_URL", default="")
SMS_HTTP_TOKEN = env.str("SMS_HTTP_TOKEN", default="")
# WeChat template messages (loyalty.messaging.HttpWechatBackend): the official account whose openids receive them,
# and the endpoint that sends them (WeChat's message/template/send, usually through a relay that holds the
# account's access token) with its bearer token.
WECHAT_APP_ID = env.str("WECHAT_APP_ID", default="")
WECHAT_HTTP_URL = env.str("WECHAT_HTTP_URL", default="")
WECHAT_HTTP_TOKEN = env.str("WECHAT_HTTP_TOKEN", default="")
# Email messages (loyalty.messaging.DjangoEmailBackend) go through Django's email backend: EMAIL_URL, e.g.
# smtp+tls://user:password@smtp.example.com:587 (consolemail:// prints them).
vars().update(env.email_url("EMAIL_URL", default="smtp://localhost:25"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="loyalty@localhost")

# Messages to members (loyalty.messaging): the language of their templates; quiet hours in the business time zone
# ("21:00-09:00": a message due then waits until the end; empty: none); at most one message of a kind per member
# and channel in this many days (kinds about one thing, such as a lot's expiry date, count per thing instead); a
# failed provider call is tried again after MESSAGE_RETRY_BASE_SECONDS, then twice as long each time, until
# MESSAGE_MAX_ATTEMPTS calls; messages go to the workers in batches of MESSAGE_BATCH_SIZE, and one a worker took
# but never finished goes again after MESSAGE_LEASE_SECONDS.
MESSAGE_LANGUAGE = env.str("MESSAGE_LANGUAGE", default=LANGUAGE_CODE)
# The reminders job (09:00): points expiring this many days ahead (each a reminder of its own), and the warning
# this many days before a tier's hold ends when her growth would not keep it.
POINTS_EXPIRY_REMINDER_DAYS = env.list("POINTS_EXPIRY_REMINDER_DAYS", cast=int, default=[30, 7])
TIER_DOWNGRADE_WARNING_DAYS = env.int("TIER_DOWNGRADE_WARNING_DAYS", default=30)
MESSAGE_QUIET_HOURS = env.str("MESSAGE_QUIET_HOURS", default="21:00-09:00")
MESSAGE_FREQUENCY_CAP_DAYS = env.int("MESSAGE_FREQUENCY_CAP_DAYS", default=7)
MESSAGE_MAX_ATTEMPTS = env.int("MESSAGE_MAX_ATTEMPTS", default=5)
MESSAGE_RETRY_BASE_SECONDS = env.int("MESSAGE_RETRY_BASE_SECONDS", default=60)
MESSAGE_BATCH_SIZE = env.int("MESSAGE_BATCH_SIZE", default=200)
MESSAGE_LEASE_SECONDS = env.int("MESSAGE_LEASE_SECONDS", default=600)
if MESSAGE_QUIET_HOURS and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", MESSAGE_QUIET_HOURS):
    raise ImproperlyConfigured(
        f"MESSAGE_QUIET_HOURS must look like 21:00-09:00 (or be empty), not {MESSAGE_QUIET_HOURS!r}."
    )
if MESSAGE_LANGUAGE not in dict(LANGUAGES):
    raise ImproperlyConfigured(f"MESSAGE_LANGUAGE must be one of {', '.join(dict(LANGUAGES))}.")
if MESSAGE_MAX_ATTEMPTS < 1 or MESSAGE_BATCH_SIZE < 1 or MESSAGE_FREQUENCY_CAP_DAYS < 0:
    raise ImproperlyConfigured(
        "MESSAGE_MAX_ATTEMPTS and MESSAGE_BATCH_SIZE must be 1 or more, MESSAGE_FREQUENCY_CAP_DAYS 0 or more."
    )

# Webhooks (loyalty.webhooks, loyalty.webhook_http). Production allows only https URLs whose host resolves to public
# addresses (checked when a subscription is saved and again before every delivery); development and test allow http
# and loopback / private addresses (a receiver on this machine). Production refuses the setting on.
WEBHOOKS_ALLOW_PRIVATE_URLS = env.bool("WEBHOOKS_ALLOW_PRIVATE_URLS", default=not PRODUCTION)
if PRODUCTION and WEBHOOKS_ALLOW_PRIVATE_URLS:
    raise ImproperlyConfigured("WEBHOOKS_ALLOW_PRIVATE_URLS must be off in production (https to public hosts only).")
WEBHOOKS_TIMEOUT_SECONDS = env.float("WEBHOOKS_TIMEOUT_SECONDS", default=10)  # connect, and each read of an answer
# A delivery is taken for this long; a worker that died mid-delivery leaves it to be taken again after it.
WEBHOOKS_LEASE_SECONDS = env.int("WEBHOOKS_LEASE_SECONDS", default=120)
# A delivery not answered 2xx is retried (1 min, doubling, at most hourly) for this long, then failed with an alert.
WEBHOOKS_RETRY_HOURS = env.float("WEBHOOKS_RETRY_HOURS", default=24)
WEBHOOKS_RETENTION_DAYS = env.int("WEBHOOKS_RETENTION_DAYS", default=30)  # done events and deliveries kept
WEBHOOKS_KICK_ON_COMMIT = env.bool("WEBHOOKS_KICK_ON_COMMIT", default=True)  # nudge delivery after each commit
if WEBHOOKS_RETRY_HOURS < 24:
    raise ImproperlyConfigured("WEBHOOKS_RETRY_HOURS must be at least 24 (deliveries are retried for a day).")
if WEBHOOKS_LEASE_SECONDS <= 2 * WEBHOOKS_TIMEOUT_SECONDS:
    raise ImproperlyConfigured("WEBHOOKS_LEASE_SECONDS must be more than twice WEBHOOKS_TIMEOUT_SECONDS.")

# No phone number in the logs (loyalty.log_masking): every handler masks them, runserver's access log included.
# Django's own default handlers (console in DEBUG, mail_admins) are taken off the `django` logger, whose records
# reach the root's masked console instead; gunicorn masks its access log with loyalty.access_log.GunicornLogger.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_phones": {"()": "loyalty.log_masking.MaskPhones"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["mask_phones"]},
        "django.server": {"class": "logging.StreamHandler", "formatter": "django.server", "filters": ["mask_phones"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django": {"level": "INFO"},
        "django.request": {"level": "ERROR"},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
    },
}

# X-Forwarded-Proto says the client's scheme only when a proxy of ours set it: behind NUM_PROXIES > 0 proxies (the
# outermost must overwrite the header). Without a proxy the client writes it, and trusting it would let a plain-http
# request pass as https (no HTTPS redirect, secure cookies sent over http).
if NUM_PROXIES > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    SECURE_CONTENT_TYPE_NOSNIFF = True
