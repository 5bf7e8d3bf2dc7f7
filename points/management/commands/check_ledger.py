from django.core.management.base import BaseCommand, CommandError

from points.audit import all_ledger_mismatches


class Command(BaseCommand):
    help = (
        "Verify for every member that cached balances equal the sums over lots and over ledger entries, and "
        "that no lot is over-spent, for points and for stored value (principal and bonus). Prints each mismatch; "
        "exits non-zero if there is any."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=1000, help="stop printing after this many mismatches")

    def handle(self, *args, limit, **options):
        found = 0
        for line in all_ledger_mismatches():
            found += 1
            if found <= limit:
                self.stdout.write(line)
        if found:
            raise CommandError(f"{found} ledger mismatch(es).")
        self.stdout.write(
            self.style.SUCCESS("Ledger consistent: balances, entries and lots agree (points and stored value).")
        )
