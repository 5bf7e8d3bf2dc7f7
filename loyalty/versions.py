"""How the marketer's configuration is written (points' rewards, earning rules and policy; tiers' ladder and growth
policy), and the versioning rule those writes share, held here once.

Each write is one service with its own durable transaction (points.services.configuration, tiers.services). It
locks the row it changes before it checks anything, checks the values by the model's own rules (field validators,
clean(), constraints, uniqueness: the API's serializers and the admin's forms check only the input's shape), writes
only what differs, and writes one audit row with the old and the new values. Saving goes through the model's
save(), so loyalty.config_cache forgets the table at once.

The versioning rule: a version in use keeps its terms. A change to its terms is refused in place
(VersionKeepsItsTerms) and made as a new version instead, which leaves the old one as it was. A new version of a
policy starts now or later (a start up to START_GRACE ago, from a form left open a while, means now; earlier is
refused: what was in force in the past stays as it was), and never at the instant another version of the same
thing starts (which of the two applied would be a coin toss).
"""

from datetime import timedelta

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty.audit import record_audit
from loyalty.errors import DomainError, InvalidInput

START_GRACE = timedelta(minutes=15)


class VersionKeepsItsTerms(DomainError):
    """A change to the terms of a version in use; `fields` names the terms it would have changed."""

    status = 400
    code = "version_keeps_its_terms"
    default_detail = _("A version in use keeps its terms: make this change as a new version.")

    def __init__(self, fields):
        super().__init__(errors={name: [self.default_detail] for name in fields})
        self.fields = list(fields)


class StartsInThePast(DomainError):
    status = 400
    code = "valid_from_in_past"
    default_detail = _("A new version starts now or later; this valid_from is in the past.")

    def __init__(self):
        super().__init__(errors={"valid_from": [self.default_detail]})


class OverlappingVersion(DomainError):
    status = 409
    code = "overlapping_version"
    default_detail = _("Another version starts at the same instant: start this one at another time.")

    def __init__(self, other_id):
        super().__init__(errors={"valid_from": [self.default_detail]}, version=str(other_id))


class VersionReplaced(DomainError):
    status = 409
    code = "version_replaced"
    default_detail = _("A newer version replaced this one: change the newest version instead.")


def only(values, fields):
    """`values`, checked to set nothing but `fields` (not who made a row, not which version it replaces)."""
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"not fields a person sets here: {', '.join(unknown)}")
    return values


def value_of(instance, name):
    """A field's value as stored: a foreign key by its id."""
    return getattr(instance, instance._meta.get_field(name).attname)


def values_of(instance, names):
    return {name: value_of(instance, name) for name in names}


def differences(instance, values):
    """Those of `values` ({field: value}) that differ from the instance's (rows compared by id)."""
    return {
        name: value
        for name, value in values.items()
        if (value.pk if isinstance(value, Model) else value) != value_of(instance, name)
    }


def check(instance):
    """The model's own rules: field validators, clean(), constraints, uniqueness. Raises InvalidInput naming the
    fields (a rule over several fields: non_field_errors)."""
    try:
        instance.full_clean()
    except ValidationError as error:
        raise InvalidInput(
            {
                ("non_field_errors" if name == NON_FIELD_ERRORS else name): messages
                for name, messages in error.message_dict.items()
            }
        ) from None


def save_checked(instance, **save_options):
    """check(), then save. A clash with a row another transaction committed meanwhile (the same code, saved at the
    same moment) comes back as check()'s refusal, not as a database error."""
    check(instance)
    try:
        with transaction.atomic():  # a savepoint: after a clash the transaction can still ask what clashed
            instance.save(**save_options)
    except IntegrityError:
        check(instance)
        raise


def change_in_place(*, actor, action, instance, changes, fixed_terms=()):
    """Apply `changes` ({field: value}) to a row the caller has locked: only what differs is written, after the
    model's rules are checked, with one audit row holding the old and new values of what changed. `fixed_terms`:
    the fields this row may no longer change (a version in use: its terms); changing one raises
    VersionKeepsItsTerms. Returns the names changed (none: nothing was written)."""
    changed = differences(instance, changes)
    fixed = [name for name in changed if name in fixed_terms]
    if fixed:
        raise VersionKeepsItsTerms(fixed)
    if not changed:
        return []
    old = values_of(instance, changed)
    for name, value in changed.items():
        setattr(instance, name, value)
    save_checked(instance, update_fields=list(changed))
    record_audit(actor=actor, action=action, target=instance, old=old, new=values_of(instance, changed))
    return list(changed)


def add(*, actor, action, instance, fields, previous=None):
    """Save a new row after the model's rules are checked, with one audit row: a new thing's `fields`, or, for a
    new version, those of its `fields` in which it differs from `previous` (the version it follows, as it was),
    with both ids."""
    save_checked(instance)
    if previous is None:
        old, new = None, values_of(instance, fields)
    else:
        changed = [name for name in fields if value_of(instance, name) != value_of(previous, name)]
        old = {"id": previous.pk, **values_of(previous, changed)}
        new = {"id": instance.pk, **values_of(instance, changed)}
    record_audit(actor=actor, action=action, target=instance, old=old, new=new)
    return instance


def version_start(valid_from, *, now=None):
    """When a new version starts: `valid_from` when it is now or later (None: now); a moment up to START_GRACE ago
    means now. Earlier raises StartsInThePast."""
    now = now or timezone.now()
    if valid_from is None or now - START_GRACE <= valid_from < now:
        return now
    if valid_from < now:
        raise StartsInThePast()
    return valid_from


def check_no_overlap(versions, valid_from):
    """`versions`: the other versions of the same thing (locked by the caller). Raises OverlappingVersion when one
    of them starts at `valid_from`, to the second (forms carry seconds: a copy of a version whose start was left
    alone would otherwise start a fraction of a second before it and never apply)."""
    second = valid_from.replace(microsecond=0)
    other = next((version for version in versions if version.valid_from.replace(microsecond=0) == second), None)
    if other is not None:
        raise OverlappingVersion(other.pk)
