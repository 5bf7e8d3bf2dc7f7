"""Demo history for `manage.py load_demo_data` (a step it runs through members.extensions.demo_data_steps): about
fifteen months of a café chain's life, written through the services as it would have happened, so that every
report and every chart of the admin dashboard has something to show.

What it writes, day by day from the first demo purchase to yesterday (business dates), with the clock moved to
each moment (DemoClock):
- purchases with order lines in six categories (coffee with bakery and tea with dessert are often bought
  together), on weekdays and more at weekends, a little more each month; members buy as their habit says
  (frequent, regular, occasional, one who stopped, or never); now and then points are used as cash;
- refunds (a few orders, whole or in part), rewards redeemed by members with enough points, goodwill
  adjustments by the marketer;
- coupons: a "15 off 100" template issued monthly to some members in the last four months and used on orders
  of 100 or more, and the free-coffee reward's coupon (its template names the reward); a weekend campaign on
  coffee beans (double points) from the last 120 days; stored value: frequent members top up (a top-up rule gives
  a bonus) and pay orders from their balance, refunded with the order; at the end, WeChat openids for a few
  members and an adjustment waiting for a manager's approval;
- the nightly jobs for each date, at their hours: release_pending, expire_points (the first purchases' points
  expire in the last three months), rfm on seven dates (PostgreSQL only: the job says so on SQLite) and, when
  they are registered, the report `snapshot` job for the last 200 dates and `report_results` for yesterday.

Repeatable: the same seed gives the same history. It is written once: when demo purchases exist, nothing is added.
"""

import logging
import random
from contextlib import ExitStack, contextmanager
from datetime import datetime, time, timedelta
from decimal import Decimal
from unittest import mock

from django.apps import apps
from django.db import NotSupportedError, connection
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.models_coupons import Coupon, CouponStatus, CouponTemplate
from campaigns.services import activate_campaign, create_campaign
from campaigns.services import coupons as coupon_services
from loyalty.clock import business_date, business_tz
from loyalty.errors import DomainError
from loyalty.scheduling import job_names, run_inline
from members.models import Member, Purchase, StaffUser, Store
from members.services import add_wechat_identity, merge_members, register_member
from points import services as points
from points.models import Reward
from stored_value import services as stored_value
from stored_value.models import Payment, StoredValueAccount, TopUpRule
from stored_value.services import configuration as stored_value_configuration

SOURCE = "demo"
ACTOR = "demo-data"
MARKETER = "staff:marketer"
SEED = 20261124
HISTORY_DAYS = 450  # the first demo purchase, days before today
SNAPSHOT_DAYS = 200  # report snapshots for the last dates: a 90-day period and the 90 days before it, and more
RFM_DAYS_AGO = (91, 90, 31, 30, 8, 7, 1)  # as-of dates of the RFM runs: each period's start (and the day before)

# (sku, category, price in CNY)
CATALOGUE = [
    ("latte", "coffee", "32"),
    ("americano", "coffee", "28"),
    ("cappuccino", "coffee", "32"),
    ("matcha-latte", "tea", "34"),
    ("oolong", "tea", "26"),
    ("croissant", "bakery", "18"),
    ("bagel", "bakery", "16"),
    ("cheesecake", "dessert", "36"),
    ("tiramisu", "dessert", "38"),
    ("house-blend-beans", "beans", "98"),
    ("yunnan-beans", "beans", "128"),
    ("tumbler", "merch", "168"),
]
COMPANIONS = {"coffee": "bakery", "tea": "dessert", "beans": "coffee", "bakery": "coffee", "dessert": "tea"}
REWARDS = [
    {"code": "demo-coffee", "name": "一杯咖啡 Free coffee", "kind": "coupon", "cost_points": 300},
    {
        "code": "demo-voucher-20",
        "name": "20元代金券 20 CNY voucher",
        "kind": "voucher",
        "cost_points": 600,
        "voucher_amount": Decimal("20.00"),
    },
    {"code": "demo-tote", "name": "帆布袋 Tote bag", "kind": "gift", "cost_points": 900, "stock": 500},
    {"code": "demo-tumbler", "name": "随行杯 Tumbler", "kind": "gift", "cost_points": 1500, "stock": 200},
]
COUPON_TEMPLATES = [
    {
        "name": "满100减15 15 off 100",
        "kind": "amount_off",
        "amount_off": Decimal("15.00"),
        "threshold": Decimal("100.00"),
        "valid_days": 30,
    },
    {
        "name": "一杯咖啡 Free coffee",
        "kind": "free_item",
        "valid_days": 60,
        "reward_code": "demo-coffee",
    },
]
COUPON_DAYS = 120  # the monthly coupon issues of the last months
COUPONS_PER_ISSUE = 12
CAMPAIGN_DAYS = 120  # the beans campaign runs for the last days
TOP_UP_DAYS = 200  # frequent members top up in the last days
TOP_UP_RULE = {"name": "充500送50 Top up 500, get 50", "tiers": [{"amount": 50000, "bonus": 5000, "points": 100}]}
WECHAT_APP_ID = "wxdemo0000000001"
# Habits: (name, share of members, mean days between purchases (None: never buys), chance a day that she redeems
# a reward she can afford). Occasional and lapsed members seldom redeem: their points are the ones that expire.
HABITS = [
    ("frequent", 0.2, 12, 0.03),
    ("regular", 0.3, 28, 0.02),
    ("occasional", 0.2, 60, 0.004),
    ("lapsed", 0.15, 16, 0.002),
    ("never", 0.15, None, 0.0),
]


class DemoClock:
    """Moves "now" for the services while the history is written: django.utils.timezone.now, and the model fields
    whose default is that function (they hold the function itself, so patching the module is not enough for them).
    Demo data only: nothing else in the project moves time."""

    def __init__(self):
        self.now = timezone.now()

    @contextmanager
    def running(self):
        real_now = timezone.now
        fields = [
            field for model in apps.get_models() for field in model._meta.concrete_fields if field.default is real_now
        ]

        def now():
            return self.now

        def set_default(value):
            for field in fields:
                field.default = value
                field.__dict__.pop("_get_default", None)  # Field caches the callable it calls

        with ExitStack() as stack:
            stack.enter_context(mock.patch.object(timezone, "now", now))
            set_default(now)
            stack.callback(set_default, real_now)
            yield self


def at(day, hour, minute=0):
    """An aware instant on a business date."""
    return datetime.combine(day, time(hour, minute), tzinfo=business_tz())


def load_history(*, stdout, style):
    """The step load_demo_data runs: the demo history, once."""
    if Purchase.objects.filter(source=SOURCE).exists():
        stdout.write("Demo history already loaded (demo purchases exist): nothing added.")
        return
    members = list(Member.objects.filter(external_id__startswith="DEMO-").order_by("id"))
    stores = list(Store.objects.order_by("code"))
    if not members or not stores:
        stdout.write("No demo members: no demo history.")
        return
    history = DemoHistory(members, stores)
    stdout.write(f"Writing the demo history from {history.first_day} (a few minutes)...")
    with DemoClock().running() as clock, quick_commits(), quiet_logs():
        history.write(clock, stdout)
    stdout.write(style.SUCCESS(history.summary()))


@contextmanager
def quick_commits():
    """Thousands of small transactions: on this connection only, commits do not wait for the disk (SQLite:
    synchronous=OFF; PostgreSQL: synchronous_commit off, which can lose the last commits in a crash but never
    corrupts). Demo data can simply be loaded again."""
    pragmas = {
        "sqlite": ("PRAGMA synchronous = OFF", "PRAGMA synchronous = FULL"),
        "postgresql": ("SET synchronous_commit TO OFF", "RESET synchronous_commit"),
    }.get(connection.vendor)
    if pragmas is None or connection.in_atomic_block:  # in a transaction (a test's) SQLite refuses the pragma
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(pragmas[0])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(pragmas[1])


@contextmanager
def quiet_logs():
    """The services log every message they send and Celery every eager task: thousands of lines, not for the
    person running `make run`. Warnings and errors still show."""
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


class DemoHistory:
    def __init__(self, members, stores):
        self.rng = random.Random(SEED)  # noqa: S311 - repeatable demo data, not security
        self.members = members
        self.stores = stores
        self.today = timezone.localdate(timezone.now(), business_tz())
        self.first_day = self.today - timedelta(days=HISTORY_DAYS)
        # nothing can expire before the first demo points' last valid day (the policy in force decides it)
        self.first_expiry = timezone.localdate(
            points.expires_at_for(points.current_policy(), at(self.first_day, 0)), business_tz()
        ) - timedelta(days=1)
        self.habits = {member.pk: self._habit(member) for member in members}
        self.counts = dict.fromkeys(
            (
                "purchases",
                "refunds",
                "redemptions",
                "adjustments",
                "points_as_cash",
                "job_runs",
                "coupons_issued",
                "coupons_used",
                "top_ups",
                "stored_value_payments",
            ),
            0,
        )
        self.topped_up = set()  # members who have stored value
        self.purchases = []  # (purchase id, member id, amount) of the recent ones, for refunds
        self.order_number = 0
        self.skipped = {}  # job name → why it was not run

    def _habit(self, member):
        roll, total = self.rng.random(), 0.0
        name, _, mean_days, redeems = HABITS[-1]
        for habit in HABITS:
            total += habit[1]
            if roll < total:
                name, _, mean_days, redeems = habit
                break
        stop = None
        if name == "lapsed":  # bought regularly, then stopped between 4 and 12 months ago
            stop = self.today - timedelta(days=self.rng.randrange(120, 360))
        return {
            "name": name,
            "mean_days": mean_days,
            "redeems": redeems,
            "stop": stop,
            "store": self.rng.choice(self.stores),
        }

    # --- the timeline ---------------------------------------------------------------------------------------------

    def write(self, clock, stdout):
        self.rewards = self._rewards(clock)
        self.coupon_template = self._coupon_templates(clock)
        day = self.first_day
        while day < self.today:
            for moment, action in sorted(self._day_events(day), key=lambda item: item[0]):
                clock.now = moment
                action()
            self._nightly_jobs(clock, day)
            day += timedelta(days=1)
        clock.now = at(self.today - timedelta(days=1), 20)
        self._wechat_and_approval()
        self._merge_a_duplicate()
        for job, reason in self.skipped.items():
            stdout.write(f"  {job}: not run ({reason})")

    def _rewards(self, clock):
        clock.now = at(self.first_day, 7)
        rewards = []
        for values in REWARDS:
            reward = Reward.objects.filter(code=values["code"], replaced_at__isnull=True).first()
            rewards.append(reward or points.create_reward(actor=MARKETER, values=values))
        return rewards

    def _day_events(self, day):
        weekend = day.weekday() >= 5
        # the chain grows: 60 % of today's pace fifteen months ago
        pace = (0.6 + 0.4 * (day - self.first_day).days / HISTORY_DAYS) * (1.5 if weekend else 1.0)
        events = []
        for member in self.members:
            habit = self.habits[member.pk]
            joined = timezone.localdate(member.joined_at, business_tz())
            if habit["mean_days"] is None or day < joined or (habit["stop"] and day >= habit["stop"]):
                continue
            if self.rng.random() < pace / habit["mean_days"]:
                moment = at(day, self.rng.randrange(8, 21), self.rng.randrange(60))
                events.append((moment, lambda member=member, moment=moment: self._purchase(member, moment)))
            if self.rng.random() < habit["redeems"]:
                moment = at(day, self.rng.randrange(8, 21), self.rng.randrange(60))
                events.append((moment, lambda member=member: self._redeem(member)))
        days_left = (self.today - day).days
        if days_left == CAMPAIGN_DAYS:
            events.append((at(day, 6), self._campaign))
        if days_left == TOP_UP_DAYS:
            events.append((at(day, 6, 30), self._top_up_rule))
        if days_left <= COUPON_DAYS and day.day == 1:
            events.append((at(day, 9), self._issue_coupons))
        if days_left <= TOP_UP_DAYS:
            for member in self.members:
                if self.habits[member.pk]["name"] == "frequent" and self.rng.random() < 0.01:
                    moment = at(day, self.rng.randrange(8, 21), self.rng.randrange(60))
                    events.append((moment, lambda member=member: self._top_up(member)))
        if self.purchases and self.rng.random() < 0.12:
            events.append((at(day, 21, 30), self._refund))
        if self.rng.random() < 0.05:
            events.append((at(day, 10, 15), self._adjust))
        return events

    def _nightly_jobs(self, clock, day):
        """The jobs for `day`, at their hours of the night after it (SPEC §7)."""
        clock.now = at(day + timedelta(days=1), 0, 5)
        self._run(clock, "release_pending", day)
        if day >= self.first_expiry:
            clock.now = at(day + timedelta(days=1), 2, 0)
            self._run(clock, "expire_points", day)
        if (self.today - day).days in RFM_DAYS_AGO:
            clock.now = at(day + timedelta(days=1), 2, 30)
            self._run(clock, "rfm", day)
        if (self.today - day).days <= SNAPSHOT_DAYS:
            clock.now = at(day + timedelta(days=1), 4, 0)
            self._run(clock, "snapshot", day)
        if (self.today - day).days == 1:  # the stored answers of the raw-row reports, for their default ranges
            clock.now = at(day + timedelta(days=1), 4, 30)
            self._run(clock, "report_results", day)

    def _run(self, clock, job, day):
        if job in self.skipped:
            return
        if job not in job_names():
            self.skipped[job] = "no such job yet"
            return
        try:
            run_inline(job, day, triggered_by=ACTOR)
        except NotSupportedError as error:  # the rfm job on SQLite
            self.skipped[job] = str(error)
            return
        self.counts["job_runs"] += 1

    # --- what members and staff do --------------------------------------------------------------------------------

    def _basket(self):
        sku, category, price = self.rng.choice(CATALOGUE)
        lines = [(sku, category, price, self.rng.choice((1, 1, 1, 2)))]
        companion = COMPANIONS.get(category)
        if companion and self.rng.random() < 0.55:
            sku, category, price = self.rng.choice([item for item in CATALOGUE if item[1] == companion])
            lines.append((sku, category, price, 1))
        if self.rng.random() < 0.12:
            sku, category, price = self.rng.choice(CATALOGUE)
            if sku not in {line[0] for line in lines}:
                lines.append((sku, category, price, 1))
        return [
            {"sku": sku, "category": category, "quantity": Decimal(quantity), "unit_price": Decimal(price)}
            for sku, category, price, quantity in lines
        ]

    def _purchase(self, member, moment):
        lines = self._basket()
        amount = sum((line["quantity"] * line["unit_price"] for line in lines), Decimal("0.00"))
        habit = self.habits[member.pk]
        store = habit["store"] if self.rng.random() < 0.8 else self.rng.choice(self.stores)
        channel = "online" if self.rng.random() < 0.2 else "offline"
        points_used = 0
        if amount >= 60 and self.rng.random() < 0.06:
            points_used = 1000  # 10 CNY at the default cash rate; refused (and retried without) when she has less
        self.order_number += 1
        order_no = f"DEMO-{self.order_number:06d}"
        request = {
            "actor": ACTOR,
            "source": SOURCE,
            "member_id": member.pk,
            "order_no": order_no,
            "amount": amount,
            "store": store,
            "channel": channel,
            "occurred_at": moment,
            "lines": lines,
        }
        self._use_coupon(member, store, order_no, amount)
        try:
            outcome = self._record_purchase(request, points_used)
        except DomainError:
            outcome = self._record_purchase(request, 0)
            points_used = 0
        self._pay_from_stored_value(member, store, order_no, amount)
        self.counts["purchases"] += 1
        self.counts["points_as_cash"] += bool(points_used)
        self.purchases = [*self.purchases[-200:], (int(outcome.result["id"]), amount)]

    def _record_purchase(self, request, points_used):
        body = {**request, "store": request["store"].code, "points_used": points_used}
        return points.record_purchase(**request, points_used=points_used, fingerprint=points.request_fingerprint(body))

    def _refund(self):
        purchase_id, amount = self.purchases.pop(self.rng.randrange(len(self.purchases)))
        whole = self.rng.random() < 0.5
        refund = amount if whole else (amount / 2).quantize(Decimal("0.01"))
        body = {"purchase": purchase_id, "refund_no": f"R{purchase_id}", "amount": refund}
        try:
            points.record_refund(
                actor=ACTOR,
                purchase_id=purchase_id,
                refund_no=f"R{purchase_id}",
                amount=refund,
                fingerprint=points.request_fingerprint(body),
            )
        except DomainError:
            return
        self.counts["refunds"] += 1
        order_no = Purchase.objects.filter(pk=purchase_id).values_list("order_no", flat=True).first()
        payment = Payment.objects.filter(source=SOURCE, order_no=order_no).first()
        if payment is not None:  # the money paid from stored value goes back to it, in the same share
            cents = min(int(refund * 100), payment.amount_cents - payment.refunded_cents)
            if cents > 0:
                stored_value.refund_payment(
                    actor=ACTOR,
                    payment_id=payment.pk,
                    refund_no=f"R{purchase_id}",
                    amount_cents=cents,
                    fingerprint=points.request_fingerprint({"payment": payment.pk, "cents": cents}),
                )

    def _redeem(self, member):
        affordable = [reward for reward in self.rewards if reward.cost_points <= self._available(member)]
        if not affordable:
            return
        reward = self.rng.choice(affordable)
        key = f"demo-redemption-{member.pk}-{timezone.now():%Y%m%d%H%M}"
        body = {"member": member.pk, "reward": reward.pk, "quantity": 1}
        try:
            points.redeem_reward(
                actor=ACTOR,
                scope="demo",
                key=key,
                fingerprint=points.request_fingerprint(body),
                member_id=member.pk,
                reward_id=reward.pk,
                store=self.habits[member.pk]["store"],
            )
        except DomainError:
            return
        self.counts["redemptions"] += 1

    def _available(self, member):
        from points.models import PointsAccount

        return PointsAccount.objects.filter(member_id=member.pk).values_list("available", flat=True).first() or 0

    def _adjust(self):
        member = self.rng.choice(self.members)
        value = self.rng.choice((50, 100, 200))
        key = f"demo-adjustment-{member.pk}-{timezone.now():%Y%m%d}"
        body = {"member": member.pk, "points": value, "reason": "goodwill"}
        try:
            points.adjust_points(
                actor=MARKETER,
                role="marketer",
                scope="demo",
                key=key,
                fingerprint=points.request_fingerprint(body),
                member_id=member.pk,
                points=value,
                reason="Goodwill: a late order 订单延误补偿",
            )
        except DomainError:
            return
        self.counts["adjustments"] += 1

    # --- coupons, the campaign, stored value, WeChat and an approval ---------------------------------------------

    def _coupon_templates(self, clock):
        clock.now = at(self.first_day, 7, 30)
        made = []
        for values in COUPON_TEMPLATES:
            template = CouponTemplate.objects.filter(name=values["name"]).first()
            made.append(template or coupon_services.create_template(actor=MARKETER, values=values))
        return made[0]

    def _campaign(self):
        if Campaign.objects.filter(name__startswith="周末咖啡豆").exists():
            return
        campaign = create_campaign(
            actor=MARKETER,
            values={
                "name": "周末咖啡豆双倍积分 Double points on beans at weekends",
                "kind": "multiplier",
                "multiplier": Decimal("2"),
                "starts_at": timezone.now(),
                "conditions": {"categories": ["beans"], "weekdays": [6, 7]},
            },
        )
        activate_campaign(actor=MARKETER, campaign_id=campaign.pk)

    def _issue_coupons(self):
        chosen = self.rng.sample(self.members, min(COUPONS_PER_ISSUE, len(self.members)))
        ids = [member.pk for member in chosen if member.status == "active"]
        key = f"demo-coupons-{business_date(timezone.now())}"
        try:
            outcome = coupon_services.issue_coupons(
                actor=MARKETER,
                scope="demo",
                key=key,
                fingerprint=points.request_fingerprint({"key": key, "members": ids}),
                template_id=self.coupon_template.pk,
                member_ids=ids,
                source="admin",
            )
        except DomainError:
            return
        self.counts["coupons_issued"] += len(outcome.result["issued"])

    def _use_coupon(self, member, store, order_no, amount):
        """Her 15-off coupon on an order it fits, now and then (before the order is recorded, as at the till)."""
        if amount < Decimal("100") or self.rng.random() < 0.4:
            return
        today = business_date(timezone.now())
        coupon = (
            Coupon.objects.filter(
                member_id=member.pk,
                template=self.coupon_template,
                status=CouponStatus.UNUSED,
                valid_from__lte=today,
                valid_until__gte=today,
            )
            .order_by("valid_until")
            .first()
        )
        if coupon is None:
            return
        try:
            coupon_services.redeem_coupon(
                actor=ACTOR,
                scope="demo",
                key=f"demo-coupon-{order_no}",
                fingerprint=points.request_fingerprint({"code": coupon.code, "order_no": order_no}),
                code=coupon.code,
                order_no=order_no,
                store=store,
                amount=amount,
                source=SOURCE,
                member_id=member.pk,
            )
        except DomainError:
            return
        self.counts["coupons_used"] += 1

    def _top_up_rule(self):
        if not TopUpRule.objects.filter(name=TOP_UP_RULE["name"]).exists():
            stored_value_configuration.create_top_up_rule(
                actor=MARKETER, values={**TOP_UP_RULE, "valid_from": timezone.now(), "bonus_valid_days": 365}
            )

    def _top_up(self, member):
        number = self.counts["top_ups"] + 1
        amount = self.rng.choice((20000, 50000, 50000, 100000))
        body = {"member": member.pk, "amount": amount, "ref": number}
        try:
            stored_value.top_up(
                actor=ACTOR,
                member_id=member.pk,
                amount_cents=amount,
                payment_method="wechat_pay",
                payment_ref=f"DEMO-TOPUP-{number:05d}",
                fingerprint=points.request_fingerprint(body),
                store=self.habits[member.pk]["store"],
            )
        except DomainError:
            return
        self.topped_up.add(member.pk)
        self.counts["top_ups"] += 1

    def _pay_from_stored_value(self, member, store, order_no, amount):
        """Members with stored value pay most orders from it (when it holds enough)."""
        if member.pk not in self.topped_up or self.rng.random() < 0.3:
            return
        account = StoredValueAccount.objects.filter(member_id=member.pk).first()
        cents = int(amount * 100)
        if account is None or account.total_cents < cents:
            return
        try:
            stored_value.pay(
                actor=ACTOR,
                scope="demo",
                key=f"demo-pay-{order_no}",
                fingerprint=points.request_fingerprint({"order_no": order_no, "cents": cents}),
                member_id=member.pk,
                source=SOURCE,
                order_no=order_no,
                amount_cents=cents,
                store=store,
            )
        except DomainError:
            return
        self.counts["stored_value_payments"] += 1

    def _wechat_and_approval(self):
        """A few members bound their WeChat (the admin search finds them by openid), and a clerk asked for an
        adjustment over her limit that waits for a manager (the approvals list)."""
        for member in self.members[:10]:
            try:
                add_wechat_identity(
                    actor=ACTOR, member=member, app_id=WECHAT_APP_ID, openid=f"oDEMO{member.pk:08d}{'x' * 15}"
                )
            except DomainError:
                continue
        clerk = StaffUser.objects.filter(username="clerk").first()
        if clerk is None:
            return
        member = self.members[0]
        try:
            points.request_adjustment(
                requester=clerk,
                scope="demo",
                key="demo-approval",
                fingerprint="demo-approval",
                member_id=member.pk,
                points=2000,
                reason="Lost receipt, goodwill 小票丢失补积分",
            )
        except DomainError:
            return

    def _merge_a_duplicate(self):
        """One member registered twice (a second card at another store, by her external id) and an admin merged
        the duplicate into her: the merges list and the survivor's ledger show it."""
        survivor = self.members[1]
        try:
            duplicate = register_member(
                actor=ACTOR,
                external_id=f"{survivor.external_id or survivor.member_no}-DUP",
                name=survivor.name,
                store=self.stores[-1],
                channel="store",
            )
            merge_members(
                actor="staff:admin",
                survivor_id=survivor.pk,
                duplicate_id=duplicate.pk,
                reason="Registered twice at two stores 两家门店重复注册",
            )
        except DomainError:
            return

    def summary(self):
        counts = self.counts
        return (
            f"Demo history: {counts['purchases']} purchases ({counts['points_as_cash']} with points as cash), "
            f"{counts['refunds']} refunds, {counts['redemptions']} redemptions, {counts['adjustments']} "
            f"adjustments, {counts['coupons_issued']} coupons issued ({counts['coupons_used']} used), "
            f"{counts['top_ups']} top-ups, {counts['stored_value_payments']} orders paid from stored value, "
            f"{counts['job_runs']} nightly job runs, from {self.first_day} to "
            f"{self.today - timedelta(days=1)}."
        )


def register():
    from members.extensions import demo_data_steps

    demo_data_steps.register(load_history)
