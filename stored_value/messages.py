"""The stored-value app's message to members: the receipt of a payment from her balance (sent by pay after commit;
transactional, so it needs no marketing consent, and it does not wait out the quiet hours: she is at the counter).
The default templates are the migration 0004_stored_value_paid_message_templates's."""

from django.utils.translation import gettext_lazy as _

from loyalty.message_templates import MessageKind, register_message_kind
from stored_value.services.ledger import money

STORED_VALUE_PAID = register_message_kind(
    MessageKind(
        code="stored_value_paid",
        label=_("paid from the stored-value balance"),
        marketing=False,
        variables={
            "amount": _("what the order took from her balance (e.g. 33.00)"),
            "order_no": _("the order number"),
            "balance": _("her balance after it (principal and bonus)"),
            "store": _("the store's name (empty when none)"),
        },
        sample={"amount": "33.00", "order_no": "A1001", "balance": "77.00", "store": "南京西路店"},
        frequency_days=0,  # one per payment (the dedupe key)
        quiet_hours=False,
    )
)


def notify_payment(payment, *, balance):
    """The member's receipt of a payment, in pay's transaction (sent after it commits). `balance`: cents."""
    from loyalty.messaging import notify

    notify(
        member_id=payment.member_id,
        kind=STORED_VALUE_PAID.code,
        dedupe_key=f"stored-value-payment:{payment.pk}",
        variables={
            "amount": money(payment.amount_cents),
            "order_no": payment.order_no,
            "balance": money(balance),
            "store": payment.store.name if payment.store_id else "",
        },
        now=payment.created_at,
    )
