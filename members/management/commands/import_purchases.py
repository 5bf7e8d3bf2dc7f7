from django.core.management.base import BaseCommand, CommandError

from members.imports import (
    AWARD_CHUNK_ROWS,
    CHUNK_ROWS,
    ImportRefused,
    ProgressBar,
    default_rejects_path,
    import_purchases,
)


class Command(BaseCommand):
    help = (
        "Import historical purchases from a CSV file with a header row (UTF-8; see --encoding). Columns: "
        "member_external_id and/or member_phone (the member is found by member_external_id when the row has one, "
        "else by phone), order_no (required), occurred_at (required, ISO 8601; a time without offset is in the "
        "business time zone), amount (required, > 0, at most 2 decimals, e.g. 128.50), store (store code), channel "
        "(offline/online, default offline). Order numbers are unique per --source: running the same file again "
        "imports nothing twice. Without --award-points the purchases count for RFM and reports but earn no points. "
        "Every rejected row goes to the rejects file with its line number and reason."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the CSV file")
        parser.add_argument(
            "--create-members",
            action="store_true",
            help="create a member (channel 'import') for an unknown member_external_id instead of "
            "rejecting the row, from her first row in the file: its phone (unless another "
            "member has it or it was erased), its store as home store, its time as joined_at; "
            "never for the external id of a member erased on her request (those rows are "
            "rejected)",
        )
        parser.add_argument(
            "--award-points",
            action="store_true",
            help="award points for each purchase through the points service, one order at a time "
            "(slower; the earning rules, caps and pending periods in force apply)",
        )
        parser.add_argument(
            "--source",
            default="import",
            help="the namespace of the order numbers (default 'import'); re-runs must use the same",
        )
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
            metavar="N",
            help=f"rows per chunk, each checked and merged at once (default {CHUNK_ROWS:,}; "
            f"{AWARD_CHUNK_ROWS:,} with --award-points); on PostgreSQL without --award-points the purchases "
            "are inserted up to a million at a time",
        )

    def handle(self, *args, file, create_members, award_points, source, rejects, encoding, chunk_rows, **options):
        if chunk_rows is not None and chunk_rows < 1:
            raise CommandError("--chunk-rows must be at least 1.")
        progress = ProgressBar(self._draw) if self.stderr.isatty() else None
        try:
            report = import_purchases(
                file,
                source=source,
                create_members=create_members,
                award_points=award_points,
                rejects_path=rejects or default_rejects_path(file),
                encoding=encoding,
                chunk_rows=chunk_rows,
                progress=progress,
            )
        except ImportRefused as error:
            raise CommandError(str(error)) from None
        self.stdout.write(report.summary("purchases"))

    def _draw(self, text):
        self.stderr.write(text, style_func=str, ending="")  # plain: stderr's style is the error red
