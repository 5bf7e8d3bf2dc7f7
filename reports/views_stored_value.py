"""The stored-value report: JSON, or CSV streamed with ?format=csv. The figures come from
reports.stored_value_flows; the view's docstring, which is also its OpenAPI description, says how they are
computed."""

from rest_framework import serializers
from rest_framework.response import Response

from loyalty.api import csv_response
from reports import stored_value_flows as stored_value
from reports.views import ReportView
from reports.views_core import ERRORS, FORMAT, RANGE, STORE, date_range, documented, store_id


class MoneyPartsSerializer(serializers.Serializer):
    principal_cents = serializers.IntegerField()
    bonus_cents = serializers.IntegerField()
    total_cents = serializers.IntegerField()


class StoreLiabilitySerializer(MoneyPartsSerializer):
    store = serializers.CharField(allow_null=True, help_text="the code of the store that took the money in")


class StoredValueLiabilitySerializer(MoneyPartsSerializer):
    by_store = StoreLiabilitySerializer(many=True)


class StoredValueFiguresSerializer(serializers.Serializer):
    top_ups = serializers.IntegerField()
    topped_up_cents = serializers.IntegerField()
    bonus_given_cents = serializers.IntegerField()
    payments = serializers.IntegerField()
    paid_principal_cents = serializers.IntegerField()
    paid_bonus_cents = serializers.IntegerField()
    refunds = serializers.IntegerField()
    refunded_principal_cents = serializers.IntegerField()
    refunded_bonus_cents = serializers.IntegerField()
    withdrawals = serializers.IntegerField()
    withdrawn_cents = serializers.IntegerField()
    bonus_forfeited_cents = serializers.IntegerField()
    bonus_expired_cents = serializers.IntegerField()
    adjusted_principal_cents = serializers.IntegerField()
    adjusted_bonus_cents = serializers.IntegerField()


class StoredValueRowSerializer(StoredValueFiguresSerializer):
    date = serializers.DateField()
    store = serializers.CharField(allow_null=True)


class StoredValueTotalsSerializer(StoredValueFiguresSerializer):
    breakage = serializers.FloatField()


class StoredValueReportSerializer(serializers.Serializer):
    liability = StoredValueLiabilitySerializer()
    rows = StoredValueRowSerializer(many=True)
    totals = StoredValueTotalsSerializer()

    def get_fields(self):
        return {"from": serializers.DateField(), "to": serializers.DateField(), **super().get_fields()}


class StoredValueReportView(ReportView):
    @documented(parameters=[*RANGE, STORE, FORMAT], responses={200: StoredValueReportSerializer, **ERRORS})
    def get(self, request):
        """Stored value (储值), in integer cents: what the merchant owes now, and what moved per business date and
        store from `from` to `to`.

        - liability = Σ principal_cents and Σ bonus_cents of every member's stored-value account now (the balances
          check_ledger proves equal to the sums over the ledger and over the lots); total_cents = their sum
        - liability.by_store = Σ principal_remaining and Σ bonus_remaining of the open lots, by the store of the
          top-up that opened the lot (null: adjustments, top-ups without a store); the rows sum to the liability.
          With `store`: that store's lots only
        - rows: the ledger entries written on each date (business time zone), by the store they carry (a top-up's,
          a payment's and its refunds', a withdrawal's; null for the bonus expiry, adjustments), with `store` of
          that store only:
          top_ups, payments, refunds, withdrawals = counts of top_up, pay, refund_to_balance, withdraw entries;
          topped_up_cents = Σ principal of top_up entries; bonus_given_cents = Σ bonus of bonus entries;
          paid_principal_cents, paid_bonus_cents = −Σ principal, −Σ bonus of pay entries;
          refunded_principal_cents, refunded_bonus_cents = Σ principal, Σ bonus of refund_to_balance entries;
          withdrawn_cents = −Σ principal of withdraw entries; bonus_forfeited_cents = −Σ bonus of them;
          bonus_expired_cents = −Σ bonus of expire_bonus entries (the breakage);
          adjusted_principal_cents, adjusted_bonus_cents = Σ principal, Σ bonus of adjust entries (signed)
        - totals = the rows summed; breakage = bonus_expired_cents ÷ bonus_given_cents over the range (0 when no
          bonus was given; 4 decimals)

        Dates with a nightly snapshot read it; the others (today) read the stored-value ledger, with the same
        figures."""
        first, last = date_range(request)
        body = stored_value.stored_value_report(first, last, store_id=store_id(request))
        if self.wants_csv(request):
            return self.csv(body, first, last)
        return Response(body)

    @staticmethod
    def csv(body, first, last):
        """One table: a `day` row per date and store, the `total` row, then the liability by store
        (`liability`) and in total (`liability_total`), each section filling its own columns."""
        figures, parts = stored_value.FIGURES, ["principal_cents", "bonus_cents", "total_cents"]
        blank_figures, blank_parts = [""] * len(figures), [""] * len(parts)
        rows = [["day", r["date"], r["store"] or "", *(r[f] for f in figures), *blank_parts] for r in body["rows"]]
        rows.append(["total", f"{first}..{last}", "", *(body["totals"][f] for f in figures), *blank_parts])
        liability = body["liability"]
        rows += [
            ["liability", "", s["store"] or "", *blank_figures, *(s[p] for p in parts)] for s in liability["by_store"]
        ]
        rows.append(["liability_total", "", "", *blank_figures, *(liability[p] for p in parts)])
        header = ["section", "date", "store", *figures, *parts]
        return csv_response(f"stored-value-{first}-{last}.csv", header, rows)
