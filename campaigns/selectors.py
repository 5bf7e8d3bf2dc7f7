"""Reads about campaigns that the admin needs: the members a campaign's target takes in."""

from django.db.models import OuterRef, Q, Subquery

from members.models import Member, MemberStatus, MemberTag, RfmSnapshot
from tiers.models import Tier


def targeted_members(target):
    """Active members the target (campaigns.models.Campaign.target: tiers, tags, segments, lifecycle, stores) takes
    in as they stand now: tier, tags, newest RFM segment and lifecycle, and home store (a purchase campaign's stores
    are where the purchase is made; the home store stands in for it here). Purchase channels select no member."""
    target = target or {}
    members = Member.objects.filter(status=MemberStatus.ACTIVE)
    if target.get("stores"):
        members = members.filter(home_store__code__in=target["stores"])
    if target.get("tiers"):
        codes = list(target["tiers"])
        in_tier = Q(member_tier__tier__code__in=codes)
        entry = Tier.objects.order_by("rank").values_list("code", flat=True).first()
        if entry in codes:  # no MemberTier row: the entry tier
            in_tier |= Q(member_tier__isnull=True)
        members = members.filter(in_tier)
    if target.get("tags"):
        tagged = MemberTag.objects.filter(tag__code__in=target["tags"], tag__is_active=True).values("member_id")
        members = members.filter(pk__in=tagged)
    for key, column in (("segments", "segment"), ("lifecycle", "lifecycle")):
        if target.get(key):
            newest = RfmSnapshot.objects.filter(member=OuterRef("pk")).order_by("-as_of").values(column)[:1]
            members = members.alias(**{f"rfm_{column}": Subquery(newest)}).filter(**{f"rfm_{column}__in": target[key]})
    return members


def targeted_member_count(campaign):
    return targeted_members(campaign.target).count()
