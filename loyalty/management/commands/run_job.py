from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from loyalty import scheduling
from loyalty.models import JobStatus


class Command(BaseCommand):
    help = (
        "Run a nightly job for a business date in this process (the same code the workers run), or send it "
        "to the workers with --async. A run already done for the date is not done again (--force re-runs it); "
        "an unfinished one resumes from its unfinished chunks. With --to it runs every date from --as-of to --to, "
        "in order (a back-fill)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="job name: " + ", ".join(scheduling.job_names()))
        parser.add_argument(
            "--as-of",
            type=date.fromisoformat,
            metavar="YYYY-MM-DD",
            help="business date (default: yesterday; today for release_pending); a date that has not "
            "ended yet is refused",
        )
        parser.add_argument(
            "--to",
            type=date.fromisoformat,
            metavar="YYYY-MM-DD",
            help="run every business date from --as-of to this one (inclusive), one after the other",
        )
        parser.add_argument("--window-days", type=int, help="rfm: the window in days (default 365)")
        parser.add_argument("--force", action="store_true", help="run again even if done for the date")
        parser.add_argument(
            "--async", dest="run_async", action="store_true", help="plan the chunks and send them to the Celery workers"
        )

    def handle(self, *args, name, as_of, to, window_days, force, run_async, **options):
        params = {"window_days": window_days} if window_days else {}
        if to is not None:
            for day in self._dates(name, as_of, to):
                self._run(name, day, params, force, run_async)
            return
        self._run(name, as_of, params, force, run_async)

    def _dates(self, name, first, last):
        """The dates of a back-fill, refused whole (before anything runs) when its last date has not ended."""
        if first is None:
            raise CommandError("--to needs --as-of (the first date of the range).")
        if last < first:
            raise CommandError("--to is before --as-of.")
        try:
            scheduling.check_as_of(scheduling.job(name), last)
        except (scheduling.UnknownJob, scheduling.BusinessDateNotEnded) as error:
            raise CommandError(str(error)) from None
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def _run(self, name, as_of, params, force, run_async):
        try:
            if run_async:
                from loyalty.tasks import dispatch_job

                run = dispatch_job(name, as_of, params=params, triggered_by="command", force=force)
                self.stdout.write(f"{run.job} {run.business_date}: {run.chunks_total} chunk(s) sent to the workers.")
                return
            started = timezone.now()
            run = scheduling.run_inline(name, as_of, params=params, triggered_by="command", force=force)
        except (scheduling.UnknownJob, scheduling.BusinessDateNotEnded) as error:
            raise CommandError(str(error)) from None
        if run.status != JobStatus.DONE:
            raise CommandError(f"{run.job} {run.business_date}: {run.status} {run.error}")
        counts = " ".join(f"{key}={value}" for key, value in sorted(run.counts.items())) or "nothing to do"
        if run.finished_at and run.finished_at < started:
            self.stdout.write(
                f"{run.job} {run.business_date}: already done at {run.finished_at:%Y-%m-%d %H:%M}; "
                f"{counts} (--force runs it again)"
            )
            return
        self.stdout.write(
            self.style.SUCCESS(f"{run.job} {run.business_date}: done in {run.chunks_total} chunk(s); {counts}")
        )
