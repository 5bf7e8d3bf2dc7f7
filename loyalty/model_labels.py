"""Labels Django makes from names: a model field without a verbose_name is labelled with its name ("created_at":
"created at"), a model without one with its class name ("JobChunk": "job chunk"). Such a label is a plain string, so
the admin's columns, filters and read-only fields showed it in English. They are listed here for makemessages, and
translate_generated_labels() (PlatformConfig.ready) makes each a lazy translation. It sets the field's verbose_name
only, not the _verbose_name its deconstruction (and so the migrations) reads: no migration. A new field without a
verbose_name: add its label here (tests/loyalty/test_translations.py fails until it is translated)."""

from django.apps import apps
from django.utils.translation import gettext_lazy, gettext_noop

PROJECT_APPS = ("loyalty", "members", "points", "tiers", "stored_value", "campaigns", "reports")

GENERATED_LABELS = [
    gettext_noop("actor"),
    gettext_noop("alert"),
    gettext_noop("amount"),
    gettext_noop("attempts"),
    gettext_noop("available delta"),
    gettext_noop("bonus cents"),
    gettext_noop("bonus expires at"),
    gettext_noop("bonus remaining"),
    gettext_noop("batch"),
    gettext_noop("budget last taken"),
    gettext_noop("campaign"),
    gettext_noop("cancelled at"),
    gettext_noop("cap date"),
    gettext_noop("capped"),
    gettext_noop("chunks done"),
    gettext_noop("chunks total"),
    gettext_noop("code"),
    gettext_noop("code hash"),
    gettext_noop("counts"),
    gettext_noop("coupon batch line"),
    gettext_noop("coupon batch lines"),
    gettext_noop("created at"),
    gettext_noop("created by"),
    gettext_noop("earned on cap date"),
    gettext_noop("entry"),
    gettext_noop("error"),
    gettext_noop("event"),
    gettext_noop("expires at"),
    gettext_noop("f score"),
    gettext_noop("family"),
    gettext_noop("finished at"),
    gettext_noop("foreign attempts"),
    gettext_noop("from tier"),
    gettext_noop("home store"),
    gettext_noop("idempotency key"),
    gettext_noop("idempotency record"),
    gettext_noop("idempotency records"),
    gettext_noop("idempotency scope"),
    gettext_noop("in entry"),
    gettext_noop("ip address"),
    gettext_noop("issued at"),
    gettext_noop("job chunk"),
    gettext_noop("job chunks"),
    gettext_noop("key"),
    gettext_noop("last member id"),
    gettext_noop("last sign in"),
    gettext_noop("leased until"),
    gettext_noop("lifecycle"),
    gettext_noop("lines prepared"),
    gettext_noop("lot"),
    gettext_noop("lot movement"),
    gettext_noop("lot movements"),
    gettext_noop("m score"),
    gettext_noop("member"),
    gettext_noop("member id"),
    gettext_noop("merge"),
    gettext_noop("next member id"),
    gettext_noop("order amount"),
    gettext_noop("order no"),
    gettext_noop("otp challenge"),
    gettext_noop("otp challenges"),
    gettext_noop("out entry"),
    gettext_noop("partial"),
    gettext_noop("payload"),
    gettext_noop("payment"),
    gettext_noop("pending after"),
    gettext_noop("pending delta"),
    gettext_noop("phone"),
    gettext_noop("pk"),
    gettext_noop("points"),
    gettext_noop("points returned"),
    gettext_noop("points spent"),
    gettext_noop("policy"),
    gettext_noop("principal cents"),
    gettext_noop("principal remaining"),
    gettext_noop("provider message id"),
    gettext_noop("purchase"),
    gettext_noop("quantity"),
    gettext_noop("r score"),
    gettext_noop("recency days"),
    gettext_noop("referee"),
    gettext_noop("request hash"),
    gettext_noop("response"),
    gettext_noop("revoked at"),
    gettext_noop("reward"),
    gettext_noop("rfm chunk values"),
    gettext_noop("rfm chunk valuess"),
    gettext_noop("rule"),
    gettext_noop("run"),
    gettext_noop("scope"),
    gettext_noop("seen at"),
    gettext_noop("sign in streak"),
    gettext_noop("source"),
    gettext_noop("start id"),
    gettext_noop("status"),
    gettext_noop("status code"),
    gettext_noop("stop id"),
    gettext_noop("store"),
    gettext_noop("stored value movement"),
    gettext_noop("stored value movements"),
    gettext_noop("subscription"),
    gettext_noop("tag"),
    gettext_noop("template"),
    gettext_noop("tier"),
    gettext_noop("to tier"),
    gettext_noop("token hash"),
    gettext_noop("token version"),
    gettext_noop("top up"),
    gettext_noop("updated at"),
    gettext_noop("used at"),
    gettext_noop("user"),
    gettext_noop("written"),
]


def translate_generated_labels():
    """Make the generated labels of the project's models and fields lazy translations (once, at start-up)."""
    for model in apps.get_models():
        meta = model._meta
        if meta.app_label not in PROJECT_APPS:
            continue
        if "verbose_name" not in meta.original_attrs:
            meta.verbose_name = gettext_lazy(meta.verbose_name)
        if "verbose_name_plural" not in meta.original_attrs:
            meta.verbose_name_plural = gettext_lazy(str(meta.verbose_name_plural))
        for field in [*meta.local_fields, *meta.local_many_to_many]:
            if field._verbose_name is None and isinstance(field.verbose_name, str):
                field.verbose_name = gettext_lazy(field.verbose_name)
