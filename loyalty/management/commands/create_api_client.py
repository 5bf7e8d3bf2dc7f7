from django.core.management.base import BaseCommand, CommandError

from loyalty.access import CLIENT_SCOPES
from loyalty.credentials import create_api_client
from loyalty.errors import DomainError
from loyalty.models import ApiClient


class Command(BaseCommand):
    help = "Create a client app (POS, mini-program backend, e-shop) and print its API key once."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--store",
            action="append",
            default=[],
            metavar="CODE",
            help="bind the client to this store (repeatable); unbound clients act for all stores",
        )
        parser.add_argument(
            "--scopes",
            nargs="+",
            metavar="SCOPE",
            help=f"scopes to grant (default: all): {', '.join(sorted(CLIENT_SCOPES))}",
        )

    def handle(self, *args, name, store, scopes, **options):
        if ApiClient.objects.filter(name=name).exists():
            raise CommandError(f"A client named {name!r} already exists.")
        store_model = ApiClient._meta.get_field("stores").related_model  # the stores table, named by the field
        stores = list(store_model.objects.filter(code__in=store))
        missing = sorted(set(store) - {s.code for s in stores})
        if missing:
            raise CommandError(f"Unknown store code(s): {', '.join(missing)}")
        try:
            client, key = create_api_client(name=name, stores=stores, scopes=scopes)
        except DomainError as error:
            raise CommandError(f"{error.detail} {getattr(error, 'errors', '')}") from None
        self.stdout.write(
            f"Created client {client.name!r} (scopes: {' '.join(client.scopes)}"
            f"{'; stores: ' + ', '.join(store) if store else ''})."
        )
        self.stdout.write("API key (shown once; send it as 'Authorization: Api-Key <key>'):")
        self.stdout.write(key)
