"""A test-only URLconf: fixed report answers in the shapes of ../shared/API.md and the reports plan, served at the
report API's paths before the real URLs, so the dashboard's script can be tested on its own. Each body is a
function of the query parameters (dates in, figures out), so a test can compute exactly what the page must show.

The stubs answer only a staff session with a report role (what the real ReportView allows), so a page that did
not send the admin's session cookie gets 403s, not figures.
"""

from datetime import date, timedelta

from django.http import JsonResponse
from django.urls import include, path

from reports.dashboard import may_see_dashboard

TIERS = [("regular", 120), ("silver", 45), ("gold", 12), ("diamond", 3)]
SEGMENTS = [
    ("important_value", 18),
    ("important_develop", 9),
    ("important_retain", 7),
    ("important_winback", 5),
    ("general_value", 21),
    ("general_develop", 30),
    ("general_retain", 11),
    ("general_winback", 14),
    ("inactive", 65),
]
MOVES = [
    ("general_develop", "general_develop", 20),
    ("general_develop", "important_value", 4),
    ("general_value", "important_value", 3),
    ("important_value", "important_retain", 2),
    ("important_value", "important_value", 12),
    ("inactive", "general_develop", 6),
    (None, "general_develop", 5),  # a member without a segment at the start (joined in the period)
]
RETENTION = [
    ("2026-06", 30, [1.0, 0.5, 0.4333, 0.4, 0.3667, 0.3333]),
    ("2026-07", 25, [1.0, 0.48, 0.4, 0.36, 0.32]),
    ("2026-08", 28, [1.0, 0.5357, 0.4286, 0.3929]),
    ("2026-09", 22, [1.0, 0.4545, 0.4091]),
    ("2026-10", 31, [1.0, 0.5161]),
    ("2026-11", 27, [1.0]),
]
EMPTY = set()  # names of reports that answer with no data (a test adds to it)
MISSING = set()  # names of reports that answer 404 (a test adds to it)


def _day(text):
    return date.fromisoformat(text)


def _ordinal(day):
    return day.toordinal() % 1000


def points_rows(start, end, interval):
    """One row per day (or per Monday): issued 1000 + 10 × the day's ordinal % 1000, redeemed 40 % of it, expired
    on Sundays only."""
    rows = []
    day = start if interval == "day" else start - timedelta(days=start.weekday())
    step = timedelta(days=1 if interval == "day" else 7)
    while day <= end:
        issued = 1000 + 10 * _ordinal(day)
        rows.append(
            {
                "period": day.isoformat(),
                "issued": issued,
                "redeemed": issued * 2 // 5,
                "expired": 150 if day.weekday() == 6 else 0,
                "reversed": 20,
                "adjusted": 0,
            }
        )
        day += step
    return rows


def points(params):
    start, end = _day(params["from"]), _day(params["to"])
    interval = params.get("interval", "day")
    rows = [] if "points" in EMPTY else points_rows(start, end, interval)
    totals = {
        kind: sum(row[kind] for row in rows) for kind in ("issued", "redeemed", "expired", "reversed", "adjusted")
    }
    issued = totals["issued"] or 1
    totals |= {
        "redemption_rate": round(totals["redeemed"] / issued, 4),
        "breakage": round(totals["expired"] / issued, 4),
    }
    return {"interval": interval, "from": params["from"], "to": params["to"], "rows": rows, "totals": totals}


def liability_outstanding(as_of):
    return 50_000 + 100 * _ordinal(as_of)


def liability(params):
    as_of = _day(params["as_of"])
    outstanding = liability_outstanding(as_of)
    first = date(as_of.year + (as_of.month // 12), as_of.month % 12 + 1, 1)
    expiring = []
    for offset in range(12):
        month = date(first.year + (first.month - 1 + offset) // 12, (first.month - 1 + offset) % 12 + 1, 1)
        expiring.append({"month": month.strftime("%Y-%m"), "points": 1000 * (offset + 1)})
    return {
        "as_of": as_of.isoformat(),
        "points_available": outstanding - 3000,
        "points_pending": 3000,
        "points_outstanding": outstanding,
        "money_value": f"{outstanding / 100:.2f}",
        "expiring": [] if "liability" in EMPTY else expiring,
    }


def members_figures(start, end):
    days = (end - start).days + 1
    return {"total": 180 + _ordinal(end) // 10, "new": 2 * days, "active": 3 * days + 5}


def members(params):
    start, end = _day(params["from"]), _day(params["to"])
    figures = members_figures(start, end)
    empty = "members" in EMPTY
    return {
        "from": params["from"],
        "to": params["to"],
        **figures,
        "by_tier": [] if empty else [{"key": key, "members": count} for key, count in TIERS],
        "by_segment": [] if empty else [{"key": key, "members": count} for key, count in SEGMENTS],
        "by_lifecycle": [],
        "rows": [],
    }


def repurchase_rate(start, end):
    return round(0.25 + ((end - start).days + 1) / 1000, 4)


def repurchase(params):
    start, end = _day(params["from"]), _day(params["to"])
    return {
        "from": params["from"],
        "to": params["to"],
        "purchasing_members": 100,
        "repeat_members": int(repurchase_rate(start, end) * 100),
        "repurchase_rate": repurchase_rate(start, end),
    }


def segment_moves(params):
    moves = [] if "segment_moves" in EMPTY else MOVES
    return {
        "from": params["from"],
        "to": params["to"],
        "moves": [{"from_segment": a, "to_segment": b, "members": n} for a, b, n in moves],
    }


def retention(params):
    cohorts = [] if "retention" in EMPTY else RETENTION
    return {"cohorts": [{"cohort": c, "members": n, "retained": shares} for c, n, shares in cohorts]}


STUBS = {
    "points": ("points/", points),
    "liability": ("liability/", liability),
    "members": ("members/", members),
    "segment_moves": ("segment-moves/", segment_moves),
    "repurchase": ("repurchase/", repurchase),
    "retention": ("retention/", retention),
}
REQUESTS = []  # (report name, query parameters) in the order the stubs were asked


def _view(name, body):
    def view(request):
        if not may_see_dashboard(request.user):
            return JsonResponse({"code": "permission_denied", "detail": "Permission denied."}, status=403)
        params = request.GET.dict()
        REQUESTS.append((name, params))
        if name in MISSING:
            return JsonResponse({"code": "not_found", "detail": "Not found."}, status=404)
        return JsonResponse(body(params))

    return view


urlpatterns = [
    *[path(f"api/v1/reports/{route}", _view(name, body)) for name, (route, body) in STUBS.items()],
    path("", include("loyalty.urls")),
]
