"""The business calendar: dates are days in the business time zone (settings.TIME_ZONE), computed here only."""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone


def business_tz():
    return ZoneInfo(settings.TIME_ZONE)


def business_date(at: datetime | None = None) -> date:
    """The business date of an instant (now by default): 23:30 UTC is already tomorrow in Asia/Shanghai."""
    return (at or timezone.now()).astimezone(business_tz()).date()


def start_of_business_day(day: date) -> datetime:
    """The aware instant a business date begins (00:00 in the business time zone)."""
    return datetime.combine(day, time.min, tzinfo=business_tz())


def end_of_business_day(day: date) -> datetime:
    """The instant the next business date begins: the exclusive end of `day`."""
    return start_of_business_day(day + timedelta(days=1))
