"""Shortcuts for campaign tests: a running campaign in one call, through the marketers' service."""

from datetime import timedelta

from django.utils import timezone

from campaigns import services


def running_campaign(**values):
    """A campaign created and activated through the services, running since an hour ago unless told otherwise."""
    values.setdefault("name", f"{values.get('kind', 'multiplier')} campaign")
    values.setdefault("kind", "multiplier")
    values.setdefault("starts_at", timezone.now() - timedelta(hours=1))
    campaign = services.create_campaign(actor="test:marketer", values=values)
    return services.activate_campaign(actor="test:marketer", campaign_id=campaign.pk)


def campaign_lines(result):
    """The campaign lines of a purchase or event result: {campaign id: points}."""
    return {
        int(line["source"].split(":")[1]): line["points"]
        for line in result["points"]["breakdown"]
        if line["source"].startswith("campaign:")
    }
