from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = _("Members")

    def ready(self):
        from members import notifications
        from members.jobs import register_jobs
        from members.reminders import register_reminders_job

        register_member_tokens()
        register_jobs()
        register_reminders_job()
        notifications.register()  # who a member is to the message channels; the win-back reminders
        register_rfm()


def register_member_tokens():
    """A bearer token that is not a staff token is a member's signed access token."""
    from loyalty.access import MemberPrincipal
    from loyalty.authentication import bearer_token_readers
    from members.services.login import read_member_token

    def read(token):
        member = read_member_token(token)
        return None if member is None else (MemberPrincipal(member), token)

    bearer_token_readers.register(read, key="member_token")


def register_rfm():
    from django.db.models import Prefetch

    from members import jobs
    from members.extensions import MemberField, register_member_field, register_member_filter
    from members.models import RfmSnapshot

    def prepare(queryset):
        latest = jobs.latest_rfm_date()
        rows = RfmSnapshot.objects.filter(as_of=latest) if latest else RfmSnapshot.objects.none()
        return queryset.prefetch_related(Prefetch("rfm_snapshots", queryset=rows, to_attr="current_rfm"))

    def represent(member):
        rows = getattr(member, "current_rfm", None)
        if rows is None:  # not prefetched (a single member): look it up
            rows = list(jobs.current_rfm([member.pk]).values())
        if not rows:
            return None
        row = rows[0]
        return {
            "as_of": row.as_of.isoformat(),
            "recency_days": row.recency_days,
            "frequency": row.frequency,
            "monetary": f"{row.monetary:.2f}",
            "r_score": row.r_score,
            "f_score": row.f_score,
            "m_score": row.m_score,
            "segment": row.segment,
            "lifecycle": row.lifecycle,
        }

    def by(field):
        def filter_queryset(queryset, value):
            latest = jobs.latest_rfm_date()
            if latest is None:
                return queryset.none()
            return queryset.filter(rfm_snapshots__as_of=latest, **{f"rfm_snapshots__{field}": value})

        return filter_queryset

    register_member_field(MemberField(name="rfm", represent=represent, prepare_queryset=prepare))
    register_member_filter("segment", by("segment"))
    register_member_filter("lifecycle", by("lifecycle"))
