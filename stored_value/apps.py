from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class StoredValueConfig(AppConfig):
    name = "stored_value"
    verbose_name = _("Stored value")

    def ready(self):
        from members.locking import member_lockers
        from members.services.merge import merge_steps
        from points.audit import ledger_checks
        from stored_value import jobs, messages, services  # noqa: F401 - messages registers its kind
        from stored_value.audit import ledger_mismatches

        member_lockers.register(services.lock_member_stored_value)  # step 3 of the lock order, after tiers
        merge_steps.register(services.merge_stored_value)  # a merge moves the balance, lots and payments
        ledger_checks.register(ledger_mismatches)  # check_ledger covers stored value
        jobs.register_jobs()  # the nightly expiry of bonus money
