"""Campaign results (placeholder until the results computation lands in this module)."""


def campaign_results(campaign, *, date_from=None, date_to=None):
    raise NotImplementedError


def results_rows(result):
    raise NotImplementedError
