"""Households: members of one family, linked by staff (points may move between them, SPEC §5)."""

from django.db import transaction
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty.audit import record_audit
from loyalty.errors import DomainError, InvalidInput
from members.locking import lock_members
from members.models import Household, MemberStatus

from .membership import MemberAnonymised


class HouseholdConflict(DomainError):
    code = "household_conflict"
    default_detail = _("The two members belong to different households; one must leave hers first.")


def link_household(*, actor, member, other):
    """Put `member` and `other` in one household: the household one of them already has, or a new one. Linking
    two members already together is a no-op (safe to retry). Returns the household.

    Takes both members' locks in the written order (points account first, so a transfer in flight finishes
    before the link changes). Raises InvalidInput (the same member twice), MemberAnonymised, HouseholdConflict
    (each already has a different household)."""
    if member.pk == other.pk:
        raise InvalidInput({"member": [gettext("A member cannot be linked with herself.")]})
    with transaction.atomic(durable=True):
        locked = lock_members([member.pk, other.pk])
        member, other = locked[member.pk], locked[other.pk]
        if MemberStatus.ANONYMISED in (member.status, other.status):
            raise MemberAnonymised()
        if member.household_id and other.household_id and member.household_id != other.household_id:
            raise HouseholdConflict(households=[member.household_id, other.household_id])
        household_id = member.household_id or other.household_id
        if household_id is None:
            household_id = Household.objects.create(created_by=actor[:120]).pk
        for joining in (member, other):
            if joining.household_id != household_id:
                joining.household_id = household_id
                joining.save(update_fields=["household", "updated_at"])
                record_audit(
                    actor=actor, action="member.household_joined", target=joining, new={"household": household_id}
                )
    return Household.objects.get(pk=household_id)


def leave_household(*, actor, member):
    """Take `member` out of her household (a no-op when she has none). Under her lock, as linking."""
    with transaction.atomic(durable=True):
        member = lock_members([member.pk])[member.pk]
        if member.household_id is None:
            return member
        old = member.household_id
        member.household_id = None
        member.save(update_fields=["household", "updated_at"])
        record_audit(actor=actor, action="member.household_left", target=member, old={"household": old})
    return member
