import random
import secrets
from datetime import date, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from loyalty.access import ROLE_CLERK, ROLE_MARKETER
from members.extensions import demo_data_steps
from members.models import Member, StaffUser, Store, Tag
from members.services import add_member_tag, register_member

STORES = [
    ("SH001", "上海南京路店", "上海"),
    ("BJ001", "北京三里屯店", "北京"),
    ("GZ001", "广州天河店", "广州"),
    ("HZ001", "杭州西湖店", "杭州"),
]
TAGS = [("vip", "VIP"), ("coffee-lover", "咖啡爱好者"), ("new-parent", "新手父母"), ("staff-family", "员工家属")]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"
MEMBERS = 200


class Command(BaseCommand):
    help = (
        "Load a demo data set (stores, tags, ~200 members, an admin, a clerk and a marketer, and the steps other "
        "apps add: the reports' purchase and points history) and print the logins. Safe to run again: existing "
        "rows are kept, and the demo passwords are set anew each run."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--site",
            default="http://127.0.0.1:8000",
            help="the address the server will answer on, for the links printed at the end (make run passes its own)",
        )

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("Refusing to load demo data with ENVIRONMENT=production.")
        stores = {
            code: Store.objects.update_or_create(code=code, defaults={"name": name, "city": city})[0]
            for code, name, city in STORES
        }
        tags = [Tag.objects.get_or_create(code=code, defaults={"name": name})[0] for code, name in TAGS]
        created = self._members(list(stores.values()), tags)
        password = secrets.token_urlsafe(9)
        logins = self._staff(stores, password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {len(stores)} stores, {len(tags)} tags, "
                f"{Member.objects.filter(external_id__startswith='DEMO-').count()} demo members ({created} new)."
            )
        )
        for step in demo_data_steps:
            step(stdout=self.stdout, style=self.style)
        site = options["site"].rstrip("/")
        self.stdout.write(f"Logins for {site}/admin/ (password set anew on every run):")
        for username, role in logins:
            self.stdout.write(f"  {role:<9} username: {username}  password: {password}")
        self.stdout.write(f"The dashboard (admin and marketer): {site}/admin/reports/dashboard/")

    def _members(self, stores, tags):
        rng = random.Random(20261123)  # noqa: S311 - repeatable demo data, not security
        created = 0
        for number in range(1, MEMBERS + 1):
            external_id = f"DEMO-{number:04d}"
            phone = f"+86139{rng.randrange(10**8):08d}"
            name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
            birthday = date(1960, 1, 1) + timedelta(days=rng.randrange(365 * 45))
            store = rng.choice(stores)
            chosen_tags = rng.sample(tags, rng.choice((0, 0, 1, 2)))
            joined_days_ago = int(720 * rng.random() ** 1.5)  # more joined lately: the chain grows
            if Member.objects.filter(external_id=external_id).exists():
                continue
            if Member.objects.filter(phone=phone).exists():
                phone = None
            member = register_member(
                actor="demo-data",
                phone=phone,
                external_id=external_id,
                name=name,
                gender=rng.choice(("male", "female", "unknown")),
                birthday=birthday,
                store=store,
                channel=rng.choice(("store", "store", "mini_program", "app")),
                consents={"sms": rng.random() < 0.7, "wechat": rng.random() < 0.5, "email": rng.random() < 0.3},
            )
            Member.objects.filter(pk=member.pk).update(joined_at=timezone.now() - timedelta(days=joined_days_ago))
            for tag in chosen_tags:
                add_member_tag(actor="demo-data", member=member, tag=tag)
            created += 1
        return created

    @transaction.atomic
    def _staff(self, stores, password):
        from django.contrib.auth.models import Group

        admin, _ = StaffUser.objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
        admin.is_staff = admin.is_superuser = admin.is_active = True
        admin.set_password(password)
        admin.save()
        logins = [("admin", "admin")]
        for username, role, store_codes in (("clerk", ROLE_CLERK, ["SH001"]), ("marketer", ROLE_MARKETER, [])):
            user, _ = StaffUser.objects.get_or_create(username=username)
            user.is_staff = user.is_active = True
            user.set_password(password)
            user.save()
            user.groups.add(Group.objects.get(name=role))
            user.stores.set([stores[code] for code in store_codes])
            logins.append((username, f"{role} ({', '.join(store_codes)})" if store_codes else role))
        return logins
