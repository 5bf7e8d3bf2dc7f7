"""The rule language of rule-based tags, compiled to one SQL condition over `members_member m` with bound
parameters (never formatted in). A rule is JSON a marketer writes, e.g.

    {"all": [{"age": {"min": 18, "max": 30}},
             {"bought_category": "coffee", "days": 90},
             {"not": {"segment": ["general_winback"]}}]}

Conditions: age {min,max}; gender; birthday_month (1-12 or "current"); bought_category + days; spent {min, days};
segment [..] and lifecycle [..] (from the newest RFM run); store [codes]; joined_within_days; and all / any / not.
"""

from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from dateutil.relativedelta import relativedelta
from django.db import connection
from django.utils.translation import gettext

from loyalty.clock import end_of_business_day, start_of_business_day
from members.models import Gender, Lifecycle, Segment

MAX_DEPTH = 5
MAX_AMOUNT = Decimal("999999999999.99")  # the largest purchase amount (14 digits, 2 decimal places)


class InvalidRule(ValueError):
    pass


def validate_rule(rule):
    """Raise InvalidRule with a sentence a marketer can act on; compiling checks everything."""
    compile_rule(rule, as_of=date(2000, 1, 1), rfm_date=None)


def compile_rule(rule, *, as_of, rfm_date):
    """(sql, params) for members matching `rule` on business date `as_of`."""
    return _compile(rule, as_of, rfm_date, depth=0)


def _compile(rule, as_of, rfm_date, depth):
    if depth > MAX_DEPTH:
        raise InvalidRule(gettext("Rules nest at most five levels deep."))
    if not isinstance(rule, dict) or not rule:
        raise InvalidRule(gettext('A rule is an object, e.g. {"gender": "female"}.'))
    if "all" in rule or "any" in rule:
        key = "all" if "all" in rule else "any"
        parts = rule[key]
        if set(rule) != {key} or not isinstance(parts, list) or not parts:
            raise InvalidRule(gettext('"%(key)s" takes a non-empty list of rules.') % {"key": key})
        compiled = [_compile(part, as_of, rfm_date, depth + 1) for part in parts]
        joiner = " AND " if key == "all" else " OR "
        return "(" + joiner.join(sql for sql, _ in compiled) + ")", [p for _, params in compiled for p in params]
    if "not" in rule:
        if set(rule) != {"not"}:
            raise InvalidRule(gettext('"not" takes one rule.'))
        sql, params = _compile(rule["not"], as_of, rfm_date, depth + 1)
        return f"(NOT ({sql}))", params
    if len(rule) != 1 and not ({"bought_category", "days"} >= set(rule)):
        raise InvalidRule(gettext('Combine several conditions with "all" or "any".'))
    name = next(iter(rule)) if "bought_category" not in rule else "bought_category"
    builder = CONDITIONS.get(name)
    if builder is None:
        raise InvalidRule(
            gettext("Unknown condition %(name)r; conditions: %(conditions)s.")
            % {"name": name, "conditions": ", ".join(sorted(CONDITIONS))}
        )
    sql, params = builder(rule, as_of, rfm_date)
    # Every condition is one parenthesised term, so NOT, AND and OR around it apply to all of it.
    return f"({sql})", params


def _int(value, what, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRule(
            gettext("%(what)s must be a whole number from %(low)s to %(high)s.")
            % {"what": what, "low": low, "high": high}
        )
    return value


def _amount(value, what):
    """A money amount from 0 to MAX_AMOUNT: a number or a decimal string; never NaN or Infinity (a NaN minimum
    matched nobody on PostgreSQL and everybody on SQLite, and the admin's JSON field could not even store it)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRule(
            gettext("%(what)s must be an amount from 0 to %(max_amount)s.") % {"what": what, "max_amount": MAX_AMOUNT}
        )
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRule(
            gettext("%(what)s must be an amount from 0 to %(max_amount)s.") % {"what": what, "max_amount": MAX_AMOUNT}
        ) from None
    if not amount.is_finite():
        raise InvalidRule(gettext("%(what)s must be a finite amount (not NaN or Infinity).") % {"what": what})
    if not 0 <= amount <= MAX_AMOUNT:
        raise InvalidRule(
            gettext("%(what)s must be an amount from 0 to %(max_amount)s.") % {"what": what, "max_amount": MAX_AMOUNT}
        )
    return amount


def _codes(value, what, allowed=None):
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidRule(gettext("%(what)s takes a list of codes.") % {"what": what})
    unknown = [v for v in value if allowed is not None and v not in allowed]
    if unknown:
        raise InvalidRule(
            gettext("Unknown %(what)s code(s): %(unknown)s.") % {"what": what, "unknown": ", ".join(unknown)}
        )
    return value


def _age(rule, as_of, rfm_date):
    bounds = rule["age"]
    if not isinstance(bounds, dict) or not set(bounds) <= {"min", "max"} or not bounds:
        raise InvalidRule(gettext('age takes {"min": years, "max": years}.'))
    parts, params = ["m.birthday IS NOT NULL"], []
    if "min" in bounds:  # at least `min` years old on as_of
        parts.append("m.birthday <= %s")
        params.append(as_of - relativedelta(years=_int(bounds["min"], "age min", 0, 130)))
    if "max" in bounds:  # not yet `max + 1` years old
        parts.append("m.birthday > %s")
        params.append(as_of - relativedelta(years=_int(bounds["max"], "age max", 0, 130) + 1))
    return "(" + " AND ".join(parts) + ")", params


def _gender(rule, as_of, rfm_date):
    if rule["gender"] not in Gender.values:
        raise InvalidRule(gettext("gender is one of %(values)s.") % {"values": ", ".join(Gender.values)})
    return "m.gender = %s", [rule["gender"]]


def _birthday_month(rule, as_of, rfm_date):
    month = (
        as_of.month if rule["birthday_month"] == "current" else _int(rule["birthday_month"], "birthday_month", 1, 12)
    )
    if connection.vendor == "postgresql":
        return "EXTRACT(MONTH FROM m.birthday) = %s", [month]
    return "CAST(strftime('%%m', m.birthday) AS INTEGER) = %s", [month]


def _bought_category(rule, as_of, rfm_date):
    category = rule["bought_category"]
    if not isinstance(category, str) or not category:
        raise InvalidRule(gettext("bought_category takes a category name."))
    days = _int(rule.get("days", 90), "days", 1, 3650)
    return (
        "EXISTS (SELECT 1 FROM members_purchaseline l JOIN members_purchase p ON p.id = l.purchase_id "
        "WHERE p.member_id = m.id AND l.category = %s AND p.occurred_at >= %s AND p.occurred_at < %s)",
        [category, start_of_business_day(as_of - timedelta(days=days - 1)), end_of_business_day(as_of)],
    )


def _spent(rule, as_of, rfm_date):
    spec = rule["spent"]
    if not isinstance(spec, dict) or "min" not in spec:
        raise InvalidRule(gettext('spent takes {"min": amount, "days": n}.'))
    minimum = _amount(spec["min"], "spent.min")
    days = _int(spec.get("days", 365), "days", 1, 3650)
    return (
        "(SELECT COALESCE(SUM(p.amount - p.refunded_amount), 0) FROM members_purchase p "
        "WHERE p.member_id = m.id AND p.occurred_at >= %s AND p.occurred_at < %s) >= CAST(%s AS NUMERIC)",
        [start_of_business_day(as_of - timedelta(days=days - 1)), end_of_business_day(as_of), minimum],
    )


def _rfm(field, choices):
    def build(rule, as_of, rfm_date):
        codes = _codes(rule[field], field, set(choices))
        if rfm_date is None:
            return "(1 = 0)", []
        marks = ", ".join(["%s"] * len(codes))
        # `field` is "segment" or "lifecycle" (fixed here); the codes are bound parameters.
        return (
            f"EXISTS (SELECT 1 FROM members_rfmsnapshot r WHERE r.member_id = m.id AND r.as_of = %s "  # noqa: S608
            f"AND r.{field} IN ({marks}))",
            [rfm_date, *codes],
        )

    return build


def _store(rule, as_of, rfm_date):
    codes = _codes(rule["store"], "store")
    marks = ", ".join(["%s"] * len(codes))
    return f"m.home_store_id IN (SELECT s.id FROM members_store s WHERE s.code IN ({marks}))", codes  # noqa: S608


def _joined_within_days(rule, as_of, rfm_date):
    days = _int(rule["joined_within_days"], "joined_within_days", 1, 3650)
    return "(m.joined_at >= %s AND m.joined_at < %s)", [
        start_of_business_day(as_of - timedelta(days=days - 1)),
        end_of_business_day(as_of),
    ]


CONDITIONS = {
    "age": _age,
    "gender": _gender,
    "birthday_month": _birthday_month,
    "bought_category": _bought_category,
    "spent": _spent,
    "segment": _rfm("segment", Segment.values),
    "lifecycle": _rfm("lifecycle", Lifecycle.values),
    "store": _store,
    "joined_within_days": _joined_within_days,
}
