"""Households: staff link the members of one family (points may move between them, SPEC §5)."""

import pytest

from loyalty.errors import InvalidInput
from loyalty.models import AuditEntry
from members.models import Household, Member
from members.services import (
    HouseholdConflict,
    MemberAnonymised,
    anonymise_member,
    leave_household,
    link_household,
)
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def household_of(member):
    return Member.objects.get(pk=member.pk).household_id


def test_linking_two_members_makes_one_household_and_a_third_joins_it():
    mother, daughter, father = MemberFactory.create_batch(3)

    household = link_household(actor="staff:clerk", member=mother, other=daughter)
    again = link_household(actor="staff:clerk", member=daughter, other=mother)
    link_household(actor="staff:clerk", member=father, other=daughter)

    assert again == household
    assert Household.objects.count() == 1
    assert {household_of(m) for m in (mother, daughter, father)} == {household.pk}
    assert household.created_by == "staff:clerk"
    joined = AuditEntry.objects.filter(action="member.household_joined").order_by("id")
    assert [(a.target_id, a.new_values) for a in joined] == [
        (str(mother.pk), {"household": household.pk}),
        (str(daughter.pk), {"household": household.pk}),
        (str(father.pk), {"household": household.pk}),
    ]


def test_members_of_two_households_are_not_merged():
    a, b, c, d = MemberFactory.create_batch(4)
    first = link_household(actor="x", member=a, other=b)
    second = link_household(actor="x", member=c, other=d)

    with pytest.raises(HouseholdConflict) as refused:
        link_household(actor="x", member=a, other=c)

    assert refused.value.code == "household_conflict"
    assert (household_of(a), household_of(c)) == (first.pk, second.pk)


def test_a_member_leaves_her_household_and_may_then_join_another():
    a, b, c = MemberFactory.create_batch(3)
    first = link_household(actor="x", member=a, other=b)

    leave_household(actor="staff:clerk", member=a)
    leave_household(actor="staff:clerk", member=a)  # a no-op the second time
    second = link_household(actor="x", member=a, other=c)

    assert (household_of(a), household_of(b), household_of(c)) == (second.pk, first.pk, second.pk)
    left = AuditEntry.objects.get(action="member.household_left")
    assert (left.target_id, left.old_values) == (str(a.pk), {"household": first.pk})


def test_a_member_is_not_linked_with_herself_nor_an_anonymised_member():
    a, b = MemberFactory.create_batch(2)
    with pytest.raises(InvalidInput):
        link_household(actor="x", member=a, other=a)
    anonymise_member(actor="x", member=b, reason="request", role="admin")
    with pytest.raises(MemberAnonymised):
        link_household(actor="x", member=a, other=b)
    assert Household.objects.count() == 0


def test_anonymising_a_member_takes_her_out_of_her_household():
    a, b = MemberFactory.create_batch(2)
    household = link_household(actor="x", member=a, other=b)

    anonymise_member(actor="x", member=a, reason="request", role="admin")

    assert (household_of(a), household_of(b)) == (None, household.pk)
