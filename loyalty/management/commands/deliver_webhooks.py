"""`python manage.py deliver_webhooks`: dispatch the outbox and attempt every due webhook delivery now, in this
process (development without a worker and beat; in production the `webhooks: deliver` periodic task does this)."""

from django.core.management.base import BaseCommand

from loyalty import webhooks


class Command(BaseCommand):
    help = "Dispatch new events to the webhook subscriptions and attempt every due delivery now."

    def handle(self, *args, **options):
        results = webhooks.deliver_everything_due()
        if not results:
            self.stdout.write("Nothing due.")
        for subscription_id, counts in results.items():
            self.stdout.write(
                f"subscription {subscription_id}: {counts['delivered']} delivered, {counts['retrying']} to retry, "
                f"{counts['failed']} failed"
            )
