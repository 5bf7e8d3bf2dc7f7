from django.core.management.base import BaseCommand, CommandError

from loyalty.access import CLIENT_SCOPES
from loyalty.credentials import create_api_client
from loyalty.errors import DomainError
from loyalty.models import ApiClient


class Command(BaseCommand):
    help = (
        "Create a client app (POS, mini-program backend, e-shop) and print its API key once. Say which stores it "
        "acts for (--store CODE, repeatable, or --all-stores) and what it may do (--scopes ... or --all-scopes): "
        "nothing is assumed."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        stores = parser.add_mutually_exclusive_group(required=True)
        stores.add_argument(
            "--store",
            action="append",
            dest="stores",
            metavar="CODE",
            help="act for this store (repeatable)",
        )
        stores.add_argument(
            "--all-stores",
            action="store_true",
            help="act for every store, present and future (a mini-program or e-shop backend)",
        )
        scopes = parser.add_mutually_exclusive_group(required=True)
        scopes.add_argument(
            "--scopes",
            nargs="+",
            metavar="SCOPE",
            help=f"the scopes it may use: {', '.join(sorted(CLIENT_SCOPES))}",
        )
        scopes.add_argument("--all-scopes", action="store_true", help="every scope above")

    def handle(self, *args, name, stores, all_stores, scopes, all_scopes, **options):
        if ApiClient.objects.filter(name=name).exists():
            raise CommandError(f"A client named {name!r} already exists.")
        codes = sorted(set(stores or ()))
        store_model = ApiClient._meta.get_field("stores").related_model  # the stores table, named by the field
        found = list(store_model.objects.filter(code__in=codes))
        missing = sorted(set(codes) - {s.code for s in found})
        if missing:
            raise CommandError(f"Unknown store code(s): {', '.join(missing)}")
        scopes = sorted(CLIENT_SCOPES) if all_scopes else scopes
        unknown = sorted(set(scopes) - set(CLIENT_SCOPES))
        if unknown:
            raise CommandError(f"Unknown scope(s): {', '.join(unknown)} (scopes: {', '.join(sorted(CLIENT_SCOPES))})")
        try:
            client, key = create_api_client(name=name, stores=found, all_stores=all_stores, scopes=scopes)
        except DomainError as error:
            raise CommandError(f"{error.detail} {getattr(error, 'errors', '')}") from None
        where = "all stores" if client.all_stores else "stores: " + ", ".join(codes)
        self.stdout.write(f"Created client {client.name!r} (scopes: {' '.join(client.scopes)}; {where}).")
        self.stdout.write("API key (shown once; send it as 'Authorization: Api-Key <key>'):")
        self.stdout.write(key)
