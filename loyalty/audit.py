"""The audit log: who changed what, from which values to which."""

from loyalty.models import AuditEntry


def record_audit(*, actor, action, target, old=None, new=None):
    """One audit row for a change a person or client app made. Call inside the service's transaction."""
    AuditEntry.objects.create(
        actor=actor,
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        old_values=old,
        new_values=new,
    )
