"""Alert rules (SPEC §6): a metric, a threshold, and when crossing it becomes an alert.

Each rule is a small definition below. Its settings (on or off, threshold, floor) are the AlertRule row staff edit
in the admin, or the definition's defaults when the row is missing. Rules with an `evaluate` are measured by
`evaluate_rules` (the periodic task "alerts: evaluate", every 10 minutes, and "alerts: nightly jobs" at 06:05);
the others are raised by the app that sees the event happen, and are listed here so that they show, are switched
and are sent to subscribers like the rest.

Every firing is one loyalty.Alert row with a `key` naming the occurrence (the rule, the day, the member or job),
so evaluating again, or two evaluations at once, never writes it twice.

- points_issued_spike: the points issued today (the points of earn entries created in the business day so far)
  against the average of the 7 business days before. Fires when issued > threshold × average (default 3×) and
  issued > floor. With no points issued in those 7 days the average is 0 and the rule stays silent unless a floor
  is set (then: issued > floor). Compared exactly (issued × 7 > threshold × the 7 days' sum), so issued exactly
  3× the average does not fire and one point more does. One alert per business day.
- daily_cap_reached: a member whose points earned today reached the daily cap of the points policy in force
  (points.PointsAccount's day's total ≥ daily_cap, the cap the earning services cut awards at). One alert per
  member per business day (the member is named, so staff can look at her); the subscribers get one message per
  evaluation listing them all, not one each. The threshold is the policy's cap (edit it there).
- campaign_budget_exhausted: raised by campaigns.services.budgets when a campaign's budget runs out (once each).
- nightly_job_late: each nightly job scheduled (django-celery-beat, enabled, loyalty.tasks.start_scheduled_job)
  to start between 00:00 and the deadline (threshold: the hour, default 6 = 06:00 business time) that has no run
  `done` for its business date, finished by the deadline. Evaluated from the deadline on, for today's night: a job
  never started, still running, failed, or finished after the deadline fires once per job and date. A run
  started after the deadline and done (a rerun by hand) does not. Hourly jobs (release_pending) are not nightly.
- webhook_delivery_failed: raised by loyalty.webhooks when a delivery fails for good (after its retries).
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_celery_beat.models import PeriodicTask

from campaigns.services.budgets import BUDGET_RULE
from loyalty import scheduling
from loyalty.alerts import raise_alerts
from loyalty.clock import business_date, start_of_business_day
from loyalty.models import Alert, JobRun, JobStatus
from loyalty.webhooks import FAILED_RULE as WEBHOOK_FAILED_RULE
from points.models import EntryKind, LedgerEntry, PointsAccount
from points.services.ledger import current_policy
from reports.models_alerts import AlertRule

logger = logging.getLogger(__name__)

SPIKE_RULE = "points_issued_spike"
CAP_RULE = "daily_cap_reached"
JOBS_RULE = "nightly_job_late"
SPIKE_DAYS = 7
START_JOB_TASK = "loyalty.tasks.start_scheduled_job"
FOUR_PLACES = Decimal("0.0001")
# A late nightly job's state as its alert's subject says it (the alert's detail keeps the code).
JOB_STATE_LABELS = {
    "not started": _("not started"),
    "running": _("running"),
    "failed": _("failed"),
    "finished late": _("finished late"),
}


@dataclass(frozen=True)
class RuleSettings:
    is_active: bool
    threshold: Decimal | None
    floor: Decimal


@dataclass(frozen=True)
class Firing:
    """One occurrence a rule found: an alert to raise under `key`."""

    key: str
    metric: str
    value: Decimal
    threshold: Decimal
    subject: str = ""
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AlertRuleDefinition:
    code: str
    label: str
    metric: str
    description: str
    threshold_help: str = ""
    default_threshold: Decimal | None = None
    default_floor: Decimal = Decimal(0)
    evaluate: Callable[[RuleSettings, datetime], list[Firing]] | None = None  # None: another app raises it

    @property
    def evaluated(self):
        return self.evaluate is not None


# --- The rules ----------------------------------------------------------------------------------------------------


def _issued(start, end):
    total = LedgerEntry.objects.filter(kind=EntryKind.EARN, created_at__gte=start, created_at__lt=end).aggregate(
        points=Sum("points")
    )["points"]
    return int(total or 0)


def evaluate_spike(rule, now):
    """Points issued today against the 7 business days before (see the module's docstring)."""
    today = business_date(now)
    start = start_of_business_day(today)
    issued = _issued(start, start_of_business_day(today + timedelta(days=1)))
    history = _issued(start_of_business_day(today - timedelta(days=SPIKE_DAYS)), start)
    multiplier = rule.threshold or Decimal(0)
    if history == 0:  # nothing to compare with: only a floor can say today is too much
        fires = rule.floor > 0 and issued > rule.floor
    else:  # exactly: issued > multiplier × history / 7
        fires = issued > rule.floor and issued * SPIKE_DAYS > multiplier * history
    if not fires:
        return []
    average = Decimal(history) / SPIKE_DAYS
    threshold = max(multiplier * average, rule.floor).quantize(FOUR_PLACES)
    return [
        Firing(
            key=f"{SPIKE_RULE}:{today.isoformat()}",
            metric="points_issued_today",
            value=Decimal(issued),
            threshold=threshold,
            subject=str(_("points issued on %(date)s") % {"date": today.isoformat()}),
            detail={
                "date": today.isoformat(),
                "issued": issued,
                "average": str(average.quantize(FOUR_PLACES)),
                "days": SPIKE_DAYS,
                "multiplier": str(multiplier),
                "floor": str(rule.floor),
            },
        )
    ]


def evaluate_daily_cap(rule, now):
    """Members whose points earned today reached the daily cap: one firing each (set-based: the accounts of the
    members with an earn entry today, read through the ledger's time index, never a scan of every account)."""
    today = business_date(now)
    start = start_of_business_day(today)
    cap = current_policy(now).daily_cap
    earned_today = LedgerEntry.objects.filter(
        kind=EntryKind.EARN, created_at__gte=start, created_at__lt=start_of_business_day(today + timedelta(days=1))
    ).values("member_id")
    reached = (
        PointsAccount.objects.filter(cap_date=today, earned_on_cap_date__gte=cap, member_id__in=earned_today)
        .order_by("member_id")
        .values_list("member_id", "member__member_no", "earned_on_cap_date")
    )
    return [
        Firing(
            key=f"{CAP_RULE}:{today.isoformat()}:{member_id}",
            metric="points_earned_today",
            value=Decimal(earned),
            threshold=Decimal(cap),
            subject=str(_("member %(member_no)s") % {"member_no": member_no}),
            detail={"date": today.isoformat(), "member": str(member_id), "member_no": member_no, "cap": cap},
        )
        for member_id, member_no, earned in reached.iterator(chunk_size=2000)
    ]


def _crontab_fires_between(crontab, start, end):
    """Whether a django-celery-beat crontab starts at least once in [start, end); False for one that runs every
    hour (not a nightly job)."""
    schedule = crontab.schedule
    if len(schedule.hour) == 24:
        return False
    zone = ZoneInfo(str(crontab.timezone))
    for day in sorted({start.astimezone(zone).date(), end.astimezone(zone).date()}):
        if (
            day.month not in schedule.month_of_year
            or day.day not in schedule.day_of_month
            or day.isoweekday() % 7 not in schedule.day_of_week  # celery: 0 is Sunday
        ):
            continue
        for hour in schedule.hour:
            for minute in schedule.minute:
                if start <= datetime.combine(day, time(hour, minute), tzinfo=zone) < end:
                    return True
    return False


def nightly_jobs_due(day, deadline):
    """The names of the nightly jobs the schedule starts between the beginning of business day `day` and
    `deadline` (enabled periodic tasks of registered jobs)."""
    start = start_of_business_day(day)
    due = set()
    tasks = PeriodicTask.objects.filter(enabled=True, task=START_JOB_TASK, crontab__isnull=False)
    for task in tasks.select_related("crontab"):
        try:
            args = json.loads(task.args or "[]")
        except ValueError:
            continue
        name = args[0] if isinstance(args, list) and args and isinstance(args[0], str) else None
        if name in scheduling.job_names() and _crontab_fires_between(task.crontab, start, deadline):
            due.add(name)
    return due


def _hours_into(day_start, at):
    return (Decimal((at - day_start).total_seconds()) / 3600).quantize(FOUR_PLACES)


def _as_of_tonight(name, today):
    """The business date a job started on `today` runs for: its default date, as many days before `today` as the
    default is before the real today (yesterday for most jobs)."""
    return today - (business_date() - scheduling.job(name).default_as_of())


def evaluate_nightly_jobs(rule, now):
    """The nightly jobs of tonight not done by the deadline (see the module's docstring)."""
    today = business_date(now)
    start = start_of_business_day(today)
    deadline_hours = rule.threshold or Decimal(6)
    deadline = start + timedelta(seconds=int(deadline_hours * 3600))
    if now < deadline:
        return []
    firings = []
    for name in sorted(nightly_jobs_due(today, deadline)):
        as_of = _as_of_tonight(name, today)
        run = JobRun.objects.filter(job=name, business_date=as_of).first()
        if run is not None and run.status == JobStatus.DONE:
            if run.finished_at <= deadline or run.started_at > deadline:
                continue
            state, at = "finished late", run.finished_at
        else:
            state, at = ("not started" if run is None else str(run.status)), now
        firings.append(
            Firing(
                key=f"{JOBS_RULE}:{name}:{as_of.isoformat()}",
                metric="hours_after_midnight",
                value=_hours_into(start, at),
                threshold=deadline_hours,
                subject=str(
                    _("%(job)s %(date)s: %(state)s")
                    % {"job": name, "date": as_of.isoformat(), "state": JOB_STATE_LABELS.get(state, state)}
                )[:120],
                detail={
                    "job": name,
                    "business_date": as_of.isoformat(),
                    "state": state,
                    "run": str(run.pk) if run else None,
                    "chunks_done": run.chunks_done if run else 0,
                    "chunks_total": run.chunks_total if run else 0,
                    "error": run.error[:300] if run else "",
                    "deadline": timezone.localtime(deadline).isoformat(),
                },
            )
        )
    return firings


RULES = [
    AlertRuleDefinition(
        code=SPIKE_RULE,
        label=_("Points issued today far above the 7-day average"),
        metric="points_issued_today",
        description=_(
            "Points issued today (earn entries of the business day so far) above threshold × the average of the 7 "
            "days before, and above the floor. With no points in those 7 days it fires only when a floor is set "
            "and today passes it. Once a day."
        ),
        threshold_help=_("times the 7-day average (3: three times)"),
        default_threshold=Decimal(3),
        evaluate=evaluate_spike,
    ),
    AlertRuleDefinition(
        code=CAP_RULE,
        label=_("A member reached the daily points cap"),
        metric="points_earned_today",
        description=_(
            "A member's points earned today reached the points policy's daily cap (edit the cap there). One alert "
            "per member and day; subscribers get one message listing them."
        ),
        evaluate=evaluate_daily_cap,
    ),
    AlertRuleDefinition(
        code=BUDGET_RULE,
        label=_("A campaign's points budget ran out"),
        metric="budget_used",
        description=_("Raised by the campaign when its budget is used up: once per campaign."),
    ),
    AlertRuleDefinition(
        code=JOBS_RULE,
        label=_("A nightly job not finished by the deadline"),
        metric="hours_after_midnight",
        description=_(
            "A nightly job scheduled before the deadline with no finished run for its business date by then "
            "(never started, running, failed or finished late). Once per job and date."
        ),
        threshold_help=_("the deadline, in hours after midnight business time (6: 06:00; 6.5: 06:30)"),
        default_threshold=Decimal(6),
        evaluate=evaluate_nightly_jobs,
    ),
    AlertRuleDefinition(
        code=WEBHOOK_FAILED_RULE,
        label=_("A webhook delivery failed"),
        metric="attempts",
        description=_("Raised by the webhook delivery when an event could not be delivered after its retries."),
    ),
]
RULES_BY_CODE = {rule.code: rule for rule in RULES}


def rule_choices():
    return [(rule.code, rule.label) for rule in RULES]


def rule_settings(codes=None):
    """{code: RuleSettings} of the rules (all by default): the AlertRule rows, else the definitions' defaults."""
    codes = list(RULES_BY_CODE) if codes is None else list(codes)
    rows = {row.code: row for row in AlertRule.objects.filter(code__in=codes)}
    found = {}
    for code in codes:
        row = rows.get(code)
        definition = RULES_BY_CODE.get(code)
        if row is not None:
            found[code] = RuleSettings(row.is_active, row.threshold, row.floor)
        elif definition is not None:
            found[code] = RuleSettings(True, definition.default_threshold, definition.default_floor)
        else:  # a rule some app raises that is not defined here: on, as it was raised
            found[code] = RuleSettings(True, None, Decimal(0))
    return found


# --- Evaluation ---------------------------------------------------------------------------------------------------


def evaluate_rules(*, now=None, codes=None):
    """Evaluate the active measured rules (all, or `codes`) at `now` and raise what they find; each rule on its own
    (one that fails is logged and the others still run). Returns {rule code: alerts newly raised}."""
    now = now or timezone.now()
    wanted = [rule for rule in RULES if rule.evaluated and (codes is None or rule.code in codes)]
    active = rule_settings(rule.code for rule in wanted)
    raised = {}
    for rule in wanted:
        settings = active[rule.code]
        if not settings.is_active:
            continue
        try:
            firings = rule.evaluate(settings, now)
            new_keys = raise_alerts(
                [
                    Alert(
                        rule=rule.code,
                        metric=firing.metric,
                        value=firing.value,
                        threshold=firing.threshold,
                        subject=firing.subject[:120],
                        detail=firing.detail,
                        key=firing.key,
                        created_at=now,
                    )
                    for firing in firings
                ]
            )
        except Exception:
            logger.exception("alert rule %s could not be evaluated", rule.code)
            continue
        raised[rule.code] = len(new_keys)
    return raised
