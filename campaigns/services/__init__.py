"""Campaign services: the engine (campaigns.services.engine), budgets, group assignment, the marketers' writes
(configuration), triggers outside purchases and events (triggers) and the results (results)."""

from .configuration import (
    CampaignEnded,
    CampaignRunning,
    InvalidStatusChange,
    activate_campaign,
    change_campaign,
    copy_campaign,
    create_campaign,
    delete_campaign,
    end_campaign,
    pause_campaign,
)

__all__ = [
    "CampaignEnded",
    "CampaignRunning",
    "InvalidStatusChange",
    "activate_campaign",
    "change_campaign",
    "copy_campaign",
    "create_campaign",
    "delete_campaign",
    "end_campaign",
    "pause_campaign",
]
