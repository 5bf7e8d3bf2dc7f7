"""Campaign triggers that are neither a purchase nor an event: a member registering, and a member moving from one RFM
segment or lifecycle stage to another in the nightly run (the `segment_moves` job, after `rfm`).

The moves are found set-based: one statement per chunk of member ids joins the business date's RFM rows with the
previous run's and keeps only the moves some running segment_move campaign names. The moved members' accounts are
then locked in one statement and each gets the campaign engine's award through points.services.award_triggers
(one ledger entry each, in the chunk's transaction). A re-run of the same date awards nothing twice: each award
names the move (`segment_move:<date>`), once per campaign and member (a unique constraint holds it).
"""

import logging

from django.db import connection
from django.utils.translation import gettext_lazy as _

from campaigns.models import CampaignAward, CampaignKind
from loyalty.scheduling import JobDefinition, register_job
from members.models import RfmSnapshot

from .engine import REGISTRATION, SEGMENT_MOVE, running_campaigns

logger = logging.getLogger(__name__)
ACTOR = "job:segment_moves"


def on_member_registered(member):
    """members' registration listener: the registration bonus of running campaigns (its own transaction)."""
    from points.services import award_trigger

    if not running_campaigns(REGISTRATION):
        return
    award_trigger(member_id=member.pk, trigger=REGISTRATION, reference="registration", actor="campaigns:registration")


def _previous(as_of):
    """The RFM date before `as_of` to compare with (None: no earlier run, or no running segment_move campaign)."""
    if not running_campaigns(SEGMENT_MOVE):
        return None
    return RfmSnapshot.objects.filter(as_of__lt=as_of).order_by("-as_of").values_list("as_of", flat=True).first()


def _bounds(as_of, params):
    if _previous(as_of) is None:
        return None, None
    rows = RfmSnapshot.objects.filter(as_of=as_of).order_by()
    return (
        rows.order_by("member_id").values_list("member_id", flat=True).first(),
        rows.order_by("-member_id").values_list("member_id", flat=True).first(),
    )


MOVES_SQL = """
SELECT cur.member_id, prev.segment, cur.segment, prev.lifecycle, cur.lifecycle
FROM members_rfmsnapshot cur
JOIN members_rfmsnapshot prev ON prev.member_id = cur.member_id AND prev.as_of = %(previous)s
WHERE cur.as_of = %(as_of)s AND cur.member_id >= %(start)s AND cur.member_id < %(stop)s
  AND ({wanted})
ORDER BY cur.member_id
"""


def _wanted_moves(campaigns):
    """A WHERE clause matching exactly the moves the campaigns name, with its parameters."""
    clauses, params = [], {}
    for index, campaign in enumerate(campaigns):
        trigger = campaign.trigger
        for field in ("segment", "lifecycle"):
            want_from, want_to = trigger.get(f"from_{field}"), trigger.get(f"to_{field}")
            if not want_from and not want_to:
                continue
            parts = [f"prev.{field} <> cur.{field}"]
            if want_from:
                params[f"f{index}{field}"] = want_from
                parts.append(f"prev.{field} = %(f{index}{field})s")
            if want_to:
                params[f"t{index}{field}"] = want_to
                parts.append(f"cur.{field} = %(t{index}{field})s")
            clauses.append("(" + " AND ".join(parts) + ")")
            break
    return " OR ".join(clauses) or "FALSE", params


def segment_moves_chunk(as_of, start, stop, params):
    previous = _previous(as_of)
    campaigns = running_campaigns(SEGMENT_MOVE)
    if not previous or not campaigns:
        return {"moved": 0, "awarded": 0, "points": 0}
    wanted, wanted_params = _wanted_moves(campaigns)
    with connection.cursor() as cursor:
        cursor.execute(
            MOVES_SQL.format(wanted=wanted),
            {"previous": previous, "as_of": as_of, "start": start, "stop": stop, **wanted_params},
        )
        rows = cursor.fetchall()
    if not rows:
        return {"moved": 0, "awarded": 0, "points": 0}
    from points.services import award_triggers

    reference = f"segment_move:{as_of.isoformat()}"
    already = set(
        CampaignAward.objects.filter(
            member_id__in=[row[0] for row in rows], reference=reference, campaign__kind=CampaignKind.SEGMENT_MOVE
        ).values_list("member_id", flat=True)
    )
    items = {
        member_id: (
            reference,
            {"from_segment": fs, "to_segment": ts, "from_lifecycle": fl, "to_lifecycle": tl},
        )
        for member_id, fs, ts, fl, tl in rows
        if member_id not in already
    }
    awarded = award_triggers(items, trigger=SEGMENT_MOVE, actor=ACTOR) if items else {}
    messaged = _queue_move_messages(campaigns, rows)
    return {"moved": len(rows), "awarded": len(awarded), "points": sum(awarded.values()), "messaged": messaged}


def _queue_move_messages(campaigns, rows):
    """Campaigns whose trigger says `"message": true` also tell the members who made their move (the
    campaign_launch message; marketing: only on channels she consented to, once per member and campaign)."""
    from campaigns.models import Campaign
    from loyalty.messaging import queue_messages

    from .engine import _segment_move_matches
    from .messages import launch_requests

    requests = []
    for compiled in campaigns:
        if not compiled.trigger.get("message"):
            continue
        moved = [
            member_id
            for member_id, fs, ts, fl, tl in rows
            if _segment_move_matches(
                compiled.trigger, {"from_segment": fs, "to_segment": ts, "from_lifecycle": fl, "to_lifecycle": tl}
            )
        ]
        if moved:
            requests += launch_requests(Campaign.objects.get(pk=compiled.id), moved)
    if not requests:
        return 0
    queue_messages(requests)
    return len(requests)


def register_jobs():
    register_job(
        JobDefinition(
            name="segment_moves",
            description=_(
                "Campaign awards for members who moved between RFM segments or lifecycle stages in the "
                "night's RFM run (segment_move campaigns)."
            ),
            bounds=_bounds,
            run_chunk=segment_moves_chunk,
            chunk_size=20_000,
        )
    )


def move_campaign_history(merge):
    """A member merge's campaigns part (members.services.merge.merge_steps): the duplicate's awards move to the
    survivor, so the survivor's caps count them and a refund of a moved purchase returns its campaign points;
    her assignments move where the survivor has none in that campaign (the survivor keeps her own group)."""
    from campaigns.models import CampaignAssignment

    survivor, duplicate = merge.survivor, merge.duplicate
    awards = CampaignAward.objects.filter(member_id=duplicate.pk).update(member_id=survivor.pk)
    theirs = CampaignAssignment.objects.filter(member_id=survivor.pk).values("campaign_id")
    assignments = (
        CampaignAssignment.objects.filter(member_id=duplicate.pk)
        .exclude(campaign_id__in=theirs)
        .update(member_id=survivor.pk)
    )
    return {"campaign_awards": awards, "campaign_assignments": assignments} if awards or assignments else {}
