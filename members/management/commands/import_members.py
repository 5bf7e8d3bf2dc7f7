from django.core.management.base import BaseCommand, CommandError

from members.imports import CHUNK_ROWS, ImportRefused, ProgressBar, default_rejects_path, import_members


class Command(BaseCommand):
    help = (
        "Import members from a CSV file with a header row (UTF-8; see --encoding). Columns: external_id "
        "(required: the old system's member id; a member whose external_id exists already is skipped), phone "
        "(normalised to E.164, default region CN; must not belong to another member), name, gender "
        "(male/female/unknown), birthday (YYYY-MM-DD), email, store (store code: the home store), joined_at "
        "(ISO 8601, e.g. 2021-03-04 or 2021-03-04T10:30:00+08:00; a time without offset is in the business time "
        "zone; default now), consent_sms, consent_wechat, consent_email (true/false/1/0/yes/no; default false). "
        "Members get a new card number and referral code and the registration channel 'import'. Running the same "
        "file again imports nothing twice. A row with the external id or phone of a member erased on her request is "
        "rejected. Every rejected row goes to the rejects file with its line number and reason."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the CSV file")
        parser.add_argument(
            "--rejects",
            metavar="FILE",
            help="where to write the rejected rows (default: <file without .csv>.rejects.csv)",
        )
        parser.add_argument(
            "--encoding",
            default="utf-8-sig",
            help="the file's encoding (default utf-8, with or without BOM; e.g. gb18030)",
        )
        parser.add_argument(
            "--chunk-rows",
            type=int,
            default=CHUNK_ROWS,
            metavar="N",
            help=f"rows per chunk, each merged and committed at once (default {CHUNK_ROWS:,})",
        )

    def handle(self, *args, file, rejects, encoding, chunk_rows, **options):
        if chunk_rows < 1:
            raise CommandError("--chunk-rows must be at least 1.")
        progress = ProgressBar(self._draw) if self.stderr.isatty() else None
        try:
            report = import_members(
                file,
                rejects_path=rejects or default_rejects_path(file),
                encoding=encoding,
                chunk_rows=chunk_rows,
                progress=progress,
            )
        except ImportRefused as error:
            raise CommandError(str(error)) from None
        self.stdout.write(report.summary("members"))

    def _draw(self, text):
        self.stderr.write(text, style_func=str, ending="")  # plain: stderr's style is the error red
