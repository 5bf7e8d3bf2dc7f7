"""The report_results job stores the standard ranges; the endpoints answer from a stored result when the
parameters match one and compute live otherwise (the shop of conftest.py; today is 10 April, the job runs for
9 April)."""

import json
from datetime import date, datetime, timedelta

import pytest

from loyalty.models import JobRun
from loyalty.scheduling import run_chunk, run_inline, start_run
from reports.models import ReportResult

from .conftest import SHANGHAI, Shop, line, local

pytestmark = pytest.mark.django_db

AS_OF = date(2026, 4, 9)
COMPUTED_AT = "2026-04-10T04:00:00+00:00"  # noon in Shanghai, the frozen clock of conftest.today


def key(first, last, **options):
    return json.dumps(
        {"channel": None, "from": first, "store": None, "to": last, **options}, sort_keys=True, separators=(",", ":")
    )


# The dashboard's repurchase periods (7, 30, 90 days ending 9 April) and the periods of the same length before.
DASHBOARD_REPURCHASE = [
    ("2026-04-03", "2026-04-09"),
    ("2026-03-27", "2026-04-02"),
    ("2026-03-11", "2026-04-09"),
    ("2026-02-09", "2026-03-10"),
    ("2026-01-10", "2026-04-09"),
    ("2025-10-12", "2026-01-09"),
]
TOP_KEYS = {
    ("top", key(first, "2026-04-09", kind=kind, order_by=order_by))
    for first in ("2026-03-11", "2026-01-10")
    for kind in ("categories", "skus")
    for order_by in ("amount", "quantity")
}
STANDARD_KEYS = {
    ("retention", '{"from":"2025-05-01","store":null,"to":"2026-04-09"}'),
    ("basket", key("2026-01-10", "2026-04-09")),
    *(("repurchase", key(first, last)) for first, last in DASHBOARD_REPURCHASE),
    ("behaviour", key("2026-03-11", "2026-04-09")),
    ("behaviour", key("2026-01-10", "2026-04-09")),
    *TOP_KEYS,
}
CHUNKS = 14  # retention, basket, 6 repurchase, 2 behaviour, 4 top (categories and SKUs × 30 and 90 days)


def stored_keys():
    return set(ReportResult.objects.values_list("report", "params_key"))


def test_the_job_stores_each_standard_parameter_set_once(shop):
    run = run_inline("report_results", AS_OF)
    assert (run.status, run.chunks_total, run.counts) == ("done", CHUNKS, {"results": 18, "purged": 0})
    assert stored_keys() == STANDARD_KEYS
    assert set(ReportResult.objects.values_list("as_of", flat=True)) == {AS_OF}
    repurchase_90 = ReportResult.objects.get(report="repurchase", params_key__contains="2026-01-10")
    # 10 January … 9 April: Ann (P0, P1, P2, P3), Bob (P12, P5, P6), Cai, Dan (P8, P9), Gus; Eve's P10 was
    # refunded on 2 April, inside the range.
    assert repurchase_90.result == {
        "from": "2026-01-10",
        "to": "2026-04-09",
        "store": None,
        "channel": None,
        "purchasing_members": 5,
        "repeat_members": 3,
        "repurchase_rate": 0.6,
    }
    # Run again (forced): the rows are replaced, not added.
    first = {(row.report, row.params_key): row.result for row in ReportResult.objects.all()}
    run_inline("report_results", AS_OF, force=True)
    assert ReportResult.objects.count() == 18
    assert {(row.report, row.params_key): row.result for row in ReportResult.objects.all()} == first


def test_endpoints_answer_the_standard_ranges_from_stored_results(shop, marketer_api):
    run_inline("report_results", AS_OF)
    stored = {
        report: marketer_api.get(f"/api/v1/reports/{report}/").json()
        for report in ("repurchase", "retention", "basket", "behaviour")
    }
    for report, body in stored.items():
        assert (report, body["source"], body["computed_at"]) == (report, "stored", COMPUTED_AT)
    # A purchase recorded after the job does not show in the stored answers; it does in a live one.
    late = Shop(shop.store_a, shop.store_b)
    late.buy(shop.people["fay"], local(2026, 4, 9, 20), "500.00", lines=[line("CUP9", "cups", 1, "500")])
    again = marketer_api.get("/api/v1/reports/behaviour/").json()
    assert again == stored["behaviour"]
    assert (again["orders"], again["revenue"]) == (3, "270.00")
    live = marketer_api.get("/api/v1/reports/behaviour/", {"store": "A001"}).json()
    # At A001 in 11 March … 9 April: P9 (Dan, 40.00) and Fay's new 500.00.
    assert (live["source"], live["orders"], live["revenue"]) == ("live", 2, "540.00")
    other_range = marketer_api.get("/api/v1/reports/repurchase/", {"from": "2026-03-12"}).json()
    assert (other_range["source"], other_range["purchasing_members"]) == ("live", 4)  # Ann, Cai, Dan, Fay
    retention = marketer_api.get("/api/v1/reports/retention/").json()
    january = retention["cohorts"][8]
    assert (january["cohort"], january["purchasing"]) == ("2026-01", [1, 0, 1, 0])  # Fay's April purchase: not yet


def test_the_stored_basket_serves_a_higher_min_support_and_a_lower_one_is_live(shop, marketer_api):
    run_inline("report_results", AS_OF)
    default = marketer_api.get("/api/v1/reports/basket/").json()
    assert (default["source"], default["orders"], len(default["pairs"])) == ("stored", 6, 6)
    higher = marketer_api.get("/api/v1/reports/basket/", {"min_support": "0.2"}).json()
    assert higher["source"] == "stored"
    assert [(pair["a"], pair["b"]) for pair in higher["pairs"]] == [
        ("cups", "tea"),
        ("tea", "cups"),
        ("cake", "tea"),
        ("tea", "cake"),
    ]
    assert higher["min_support"] == 0.2
    lower = marketer_api.get("/api/v1/reports/basket/", {"min_support": "0.001"}).json()
    assert (lower["source"], len(lower["pairs"])) == ("live", 6)


def test_stored_and_live_answers_are_the_same_figures(shop, marketer_api):
    live = {report: marketer_api.get(f"/api/v1/reports/{report}/").json() for report in ("retention", "basket")}
    run_inline("report_results", AS_OF)
    for report, body in live.items():
        stored = marketer_api.get(f"/api/v1/reports/{report}/").json()
        assert stored["source"] == "stored"
        assert {**stored, "source": "live"} == body


def test_a_crashed_run_resumes_at_the_sets_not_yet_stored(shop):
    run, todo = start_run("report_results", AS_OF)
    for chunk_id in todo[:2]:
        run_chunk(chunk_id)
    assert {report for report, _ in stored_keys()} == {"retention", "basket"}
    assert JobRun.objects.get(pk=run.pk).status == "running"
    resumed = run_inline("report_results", AS_OF)
    assert (resumed.pk, resumed.status, resumed.chunks_done) == (run.pk, "done", CHUNKS)
    assert stored_keys() == STANDARD_KEYS


def test_results_older_than_35_days_are_purged(shop):
    computed = datetime(2026, 3, 1, tzinfo=SHANGHAI)
    for days, name in ((35, "kept"), (36, "purged")):
        ReportResult.objects.create(
            report="repurchase", params_key=name, result={}, as_of=AS_OF - timedelta(days=days), computed_at=computed
        )
    run = run_inline("report_results", AS_OF)
    assert run.counts["purged"] == 1
    assert set(ReportResult.objects.values_list("params_key", flat=True)) == {"kept"} | {
        name for _, name in STANDARD_KEYS
    }


def test_a_stored_answer_reads_one_row(shop, marketer_api, django_assert_max_num_queries):
    run_inline("report_results", AS_OF)
    marketer_api.get("/api/v1/reports/behaviour/")  # a first request: what authentication caches
    with django_assert_max_num_queries(3) as captured:
        body = marketer_api.get("/api/v1/reports/basket/", {"min_support": "0.05"}).json()
    assert body["source"] == "stored"
    assert sum("reports_reportresult" in query["sql"] for query in captured.captured_queries) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the job's own transactions commit: SET LOCAL ends with each
def test_the_job_sorts_with_more_memory_in_its_own_transactions_only(shop, monkeypatch):
    from django.db import connection

    from reports import behaviour

    def work_mem():
        with connection.cursor() as cursor:
            cursor.execute("SHOW work_mem")
            return cursor.fetchone()[0]

    before, seen, repurchase = work_mem(), [], behaviour.repurchase
    monkeypatch.setattr(behaviour, "repurchase", lambda period: seen.append(work_mem()) or repurchase(period))
    run_inline("report_results", AS_OF)
    assert seen == ["128MB"] * 6
    assert work_mem() == before != "128MB"


def test_every_repurchase_figure_of_the_dashboard_is_stored(shop, marketer_api):
    """The dashboard (reports/static/reports/dashboard.js, periodFor) asks for the repurchase rate of the last 7, 30
    or 90 days ending yesterday and of the period of the same length before it: each is a stored set."""
    from reports.dashboard import PERIOD_DAYS

    run_inline("report_results", AS_OF)
    asked = []
    for days in PERIOD_DAYS:
        first = AS_OF - timedelta(days=days - 1)
        previous_to = first - timedelta(days=1)
        asked += [(first, AS_OF), (previous_to - timedelta(days=days - 1), previous_to)]
    answers = {
        (first.isoformat(), last.isoformat()): marketer_api.get(
            "/api/v1/reports/repurchase/", {"from": first.isoformat(), "to": last.isoformat()}
        ).json()
        for first, last in asked
    }
    assert list(answers) == DASHBOARD_REPURCHASE
    assert {body["source"] for body in answers.values()} == {"stored"}
    figures = {
        span: (b["purchasing_members"], b["repeat_members"], b["repurchase_rate"]) for span, b in answers.items()
    }
    assert figures == {
        ("2026-04-03", "2026-04-09"): (0, 0, 0.0),
        ("2026-03-27", "2026-04-02"): (1, 0, 0.0),  # Dan's P9 on 1 April
        ("2026-03-11", "2026-04-09"): (3, 0, 0.0),  # Ann's P3, Cai's P7, Dan's P9 (Eve's P10 refunded on 2 April)
        ("2026-02-09", "2026-03-10"): (4, 2, 0.5),  # Gus P11; Ann P1, P2; Bob P5, P6 (P4 refunded); Dan P8
        ("2026-01-10", "2026-04-09"): (5, 3, 0.6),
        ("2025-10-12", "2026-01-09"): (0, 0, 0.0),
    }
