"""Step 1 of the lock order as a job or a non-points change takes it (`lock_member_accounts`, registered in
members.locking.member_lockers): by id only, the same rows and lock as lock_accounts, missing accounts created."""

import pytest
from django.db import transaction

from points.models import PointsAccount
from points.services.ledger import lock_accounts, lock_member_accounts
from tests.factories import MemberFactory
from tests.interleaving import Session, held_open, start_settled
from tests.points.helpers import adjust


@pytest.mark.django_db
def test_locks_by_id_creates_missing_accounts_and_includes_closed_ones(store_a):
    with_points, closed, without_account = (MemberFactory(home_store=store_a) for _ in range(3))
    adjust(with_points, 250)
    adjust(closed, 10)
    PointsAccount.objects.filter(member=closed).update(closed=True)
    assert not PointsAccount.objects.filter(member=without_account).exists()

    ids = [without_account.pk, with_points.pk, closed.pk, with_points.pk]  # any order, duplicates
    assert lock_member_accounts(ids) == sorted({with_points.pk, closed.pk, without_account.pk})

    created = PointsAccount.objects.get(member=without_account)
    assert (created.available, created.pending, created.lifetime_earned, created.closed) == (0, 0, 0, False)
    # Nothing else changed: the existing accounts are as they were.
    assert list(PointsAccount.objects.order_by("member_id").values_list("member_id", "available", "closed")) == sorted(
        [(with_points.pk, 250, False), (closed.pk, 10, True), (without_account.pk, 0, False)]
    )
    assert lock_member_accounts([]) == []


def available_under_lock(member):
    """A purchase's first step: her account locked (waits for whoever holds it), then read."""
    with transaction.atomic():
        return lock_accounts([member.pk])[member.pk].available


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_purchase_waits_for_the_accounts_a_job_locked_by_id(store_a):
    first, second = MemberFactory(home_store=store_a), MemberFactory(home_store=store_a)
    adjust(second, 100)
    with held_open(lambda: lock_member_accounts([first.pk, second.pk]), "job chunk"):
        purchase = Session(lambda: available_under_lock(second), "purchase")
        start_settled(purchase, rows_of="points_pointsaccount")
        assert not purchase.finished.is_set()  # waits for the job's lock on her account
    assert purchase.join() == 100
