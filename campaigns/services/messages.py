"""Campaigns' messages to members: the campaign_launch kind (marketing: only on channels she consented to).

`launch_requests` makes the messages announcing a campaign to given members; whoever picks the audience (a
marketer's send to a campaign's target, or a segment_move campaign for the members who moved, in the
segment_moves job's chunk) writes them with loyalty.messaging.queue_messages in its transaction."""

from datetime import date

from loyalty.clock import business_date
from loyalty.message_templates import MessageKind, register_message_kind
from loyalty.messaging import MessageRequest

CAMPAIGN_LAUNCH = register_message_kind(
    MessageKind(
        code="campaign_launch",
        label="campaign launch",
        marketing=True,
        variables={
            "campaign": "the campaign's name",
            "starts": "its first day",
            "ends": "its last day (empty: open-ended)",
        },
        sample={"campaign": "双十一双倍积分", "starts": date(2026, 11, 11), "ends": date(2026, 11, 12)},
    )
)


def launch_requests(campaign, member_ids):
    """A campaign_launch message to each of these members, about this campaign (once per member and campaign)."""
    variables = {
        "campaign": campaign.name,
        "starts": business_date(campaign.starts_at),
        "ends": business_date(campaign.ends_at) if campaign.ends_at else "",
    }
    return [
        MessageRequest(member_id, CAMPAIGN_LAUNCH.code, f"campaign:{campaign.pk}", variables)
        for member_id in member_ids
    ]
