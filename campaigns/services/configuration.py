"""A marketer's writes to campaigns: create, change, activate, pause, end, copy, delete a draft. Each is one durable
transaction that locks the campaign row, checks the terms against the database (codes that exist, kinds and their
fields), writes, and records one audit row with who did it.

The rule of terms: a running campaign (active or scheduled) keeps its terms: pause it to change them, or copy it as
a new version. Once members are assigned to it, its split (variants, weights, holdout) stays for good, so that a
member's group never changes under her; an ended campaign changes no more.
"""

from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from campaigns.models import (
    BonusAction,
    Campaign,
    CampaignAssignment,
    CampaignAward,
    CampaignKind,
    CampaignStatus,
    CampaignVariant,
    CapPeriod,
)
from loyalty import events
from loyalty.audit import record_audit
from loyalty.errors import DomainError, InvalidInput, NotFoundError
from members.models import Lifecycle, PurchaseChannel, Segment, Store, Tag

TERMS = (
    "kind",
    "starts_at",
    "ends_at",
    "priority",
    "stacking",
    "multiplier",
    "bonus_points",
    "trigger",
    "conditions",
    "target",
    "budget_points",
    "per_member_cap",
    "per_member_period_cap",
    "cap_period",
    "holdout_percent",
    "variants",
    "coupon_template_id",
)
SPLIT = ("holdout_percent", "variants")
API_NAMES = {"coupon_template_id": "coupon_template"}
EDITABLE = ("name", "description", *TERMS)
TARGET_KEYS = ("tiers", "tags", "segments", "lifecycle", "stores", "channels")
MULTIPLYING_KINDS = (CampaignKind.MULTIPLIER, CampaignKind.BIRTHDAY)


class CampaignRunning(DomainError):
    code = "campaign_active"
    default_detail = _("A running campaign keeps its terms: pause it to change them, or copy it as a new version.")


class CampaignEnded(DomainError):
    code = "campaign_ended"
    default_detail = _("The campaign has ended; copy it to run it again.")


class InvalidStatusChange(DomainError):
    code = "invalid_status"
    default_detail = _("The campaign's status does not allow this.")


def _codes_error(errors, field, unknown):
    if unknown:
        errors.setdefault(field, []).append(
            gettext("Unknown codes: %(codes)s.") % {"codes": ", ".join(sorted(unknown))}
        )


def check_terms(values, *, campaign=None):
    """The terms' values checked against each other and the database; raises InvalidInput naming each field."""
    errors = {}
    kind = values.get("kind")
    starts_at, ends_at = values.get("starts_at"), values.get("ends_at")
    if starts_at and ends_at and ends_at <= starts_at:
        errors["ends_at"] = [gettext("The end must come after the start.")]
    multiplier = values.get("multiplier")
    variants = values.get("variants") or []
    if multiplier is not None and multiplier <= 1:
        errors["multiplier"] = [gettext("A multiplier is greater than 1 (2 doubles the points).")]
    for index, variant in enumerate(variants):
        if variant.get("multiplier") is not None and variant["multiplier"] <= 1:
            errors[f"variants.{index}.multiplier"] = [gettext("A multiplier is greater than 1 (2 doubles the points).")]
    if variants:
        codes = [variant["code"] for variant in variants]
        if len(set(codes)) != len(codes):
            errors["variants"] = [gettext("Variant codes must differ.")]
        if "holdout" in codes:
            errors["variants"] = [gettext("`holdout` names the control group: choose another variant code.")]
        if sum(variant["weight"] for variant in variants) != 100:
            errors.setdefault("variants", []).append(gettext("The variants' weights must sum to 100."))
    has_multiplier = multiplier is not None or (variants and all(v.get("multiplier") is not None for v in variants))
    has_bonus = values.get("bonus_points") or (variants and all(v.get("bonus_points") for v in variants))
    coupon_template_id = values.get("coupon_template_id")
    if coupon_template_id is not None:
        _check_coupon_template(coupon_template_id, errors)
    # A campaign with a coupon template may give the coupon alone (no bonus, no multiplier): a coupon-only campaign.
    has_bonus = has_bonus or (coupon_template_id is not None and not has_multiplier)
    if kind == CampaignKind.MULTIPLIER and not has_multiplier:
        errors["multiplier"] = [
            gettext("A multiplier campaign needs a multiplier (on the campaign or on every variant).")
        ]
    messages_only = kind == CampaignKind.SEGMENT_MOVE and (values.get("trigger") or {}).get("message") is True
    if kind in (CampaignKind.BONUS, CampaignKind.WIN_BACK, CampaignKind.REFERRAL, CampaignKind.SEGMENT_MOVE) and (
        not has_bonus and not messages_only
    ):
        errors["bonus_points"] = [gettext("This kind of campaign gives bonus points: set bonus_points.")]
    if kind == CampaignKind.BIRTHDAY and not (has_multiplier or has_bonus):
        errors["bonus_points"] = [gettext("A birthday campaign gives bonus points or a multiplier.")]
    if kind not in MULTIPLYING_KINDS and (
        multiplier is not None or any(v.get("multiplier") is not None for v in variants)
    ):
        errors["multiplier"] = [gettext("A %(kind)s campaign gives bonus points, not a multiplier.") % {"kind": kind}]
    _check_trigger(kind, values.get("trigger") or {}, errors)
    _check_conditions(values.get("conditions") or {}, errors)
    _check_target(values.get("target") or {}, errors)
    if values.get("per_member_period_cap") is not None and not values.get("cap_period"):
        errors["cap_period"] = [gettext("Say the period of the per-member period cap (day, week or month).")]
    if values.get("cap_period") and values["cap_period"] not in CapPeriod.values:
        errors["cap_period"] = [gettext("One of %(values)s.") % {"values": ", ".join(CapPeriod.values)}]
    holdout = values.get("holdout_percent") or Decimal(0)
    if not Decimal(0) <= holdout < 100:
        errors["holdout_percent"] = [gettext("A share from 0 to under 100.")]
    budget = values.get("budget_points")
    if campaign is not None and budget is not None and budget < campaign.budget_used:
        errors["budget_points"] = [
            gettext("%(budget_used)s points of the budget are already used.") % {"budget_used": campaign.budget_used}
        ]
    if errors:
        raise InvalidInput(errors)


def _check_coupon_template(template_id, errors):
    from campaigns.models_coupons import CouponTemplate

    if template_id == "unknown" or not CouponTemplate.objects.filter(pk=template_id, is_active=True).exists():
        errors["coupon_template"] = [gettext("No active coupon template with this id.")]


def _check_trigger(kind, trigger, errors):
    if not isinstance(trigger, dict):
        errors["trigger"] = [gettext("An object.")]
        return
    if kind == CampaignKind.BONUS:
        action = trigger.get("action")
        if action not in BonusAction.values:
            errors["trigger"] = [
                gettext("trigger.action is one of %(values)s.") % {"values": ", ".join(BonusAction.values)}
            ]
        elif action in (BonusAction.FIRST_PURCHASE_IN_DAYS, BonusAction.SIGN_IN_STREAK):
            days = trigger.get("days")
            if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
                errors["trigger"] = [gettext("trigger.days is a whole number of days from 1 to 3650.")]
        elif action == BonusAction.EVENT and not trigger.get("event_type"):
            errors["trigger"] = [gettext("trigger.event_type names the custom event.")]
    elif kind == CampaignKind.SEGMENT_MOVE:
        segments, stages = set(Segment.values), set(Lifecycle.values)
        has_segment = trigger.get("to_segment") or trigger.get("from_segment")
        has_stage = trigger.get("to_lifecycle") or trigger.get("from_lifecycle")
        if not has_segment and not has_stage:
            errors["trigger"] = [gettext("Name the move: from_segment/to_segment or from_lifecycle/to_lifecycle.")]
        bad = [
            f"{key}={trigger[key]}"
            for key, allowed in (
                ("from_segment", segments),
                ("to_segment", segments),
                ("from_lifecycle", stages),
                ("to_lifecycle", stages),
            )
            if trigger.get(key) not in (None, "") and trigger[key] not in allowed
        ]
        if bad:
            errors["trigger"] = [gettext("Unknown codes: %(bad)s.") % {"bad": ", ".join(bad)}]
        if "message" in trigger and not isinstance(trigger["message"], bool):
            errors["trigger"] = [gettext("trigger.message is true (tell the members who moved) or false.")]
    elif kind == CampaignKind.WIN_BACK:
        unknown = set(trigger.get("lifecycle") or ()) - set(Lifecycle.values)
        _codes_error(errors, "trigger", unknown)
    elif kind == CampaignKind.REFERRAL:
        points = trigger.get("referrer_points")
        if points is not None and (not isinstance(points, int) or isinstance(points, bool) or points < 0):
            errors["trigger"] = [gettext("trigger.referrer_points is a whole number of points.")]


def _check_conditions(conditions, errors):
    if not isinstance(conditions, dict):
        errors["conditions"] = [gettext("An object.")]
        return
    for key, low, high in (("weekdays", 1, 7), ("hours", 0, 23)):
        values = conditions.get(key) or []
        if not isinstance(values, list) or any(
            not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high for v in values
        ):
            errors["conditions"] = [
                gettext("conditions.%(key)s lists whole numbers from %(low)s to %(high)s.")
                % {"key": key, "low": low, "high": high}
            ]
    if conditions.get("categories") is not None and not isinstance(conditions["categories"], list):
        errors["conditions"] = [gettext("conditions.categories lists category codes.")]
    unknown = set(conditions) - {"weekdays", "hours", "categories", "min_amount"}
    if unknown:
        errors["conditions"] = [gettext("Unknown conditions: %(unknown)s.") % {"unknown": ", ".join(sorted(unknown))}]


def _check_target(target, errors):
    from tiers.models import Tier

    if not isinstance(target, dict):
        errors["target"] = [gettext("An object.")]
        return
    unknown_keys = set(target) - set(TARGET_KEYS)
    if unknown_keys:
        errors["target"] = [
            gettext("Unknown target keys: %(unknown_keys)s.") % {"unknown_keys": ", ".join(sorted(unknown_keys))}
        ]
        return
    for key in TARGET_KEYS:
        if not isinstance(target.get(key, []), list):
            errors[f"target.{key}"] = [gettext("A list of codes.")]
    if any(key in errors for key in errors if key.startswith("target.")):
        return
    known = {
        "tiers": lambda codes: set(Tier.objects.filter(code__in=codes).values_list("code", flat=True)),
        "tags": lambda codes: set(Tag.objects.filter(code__in=codes).values_list("code", flat=True)),
        "stores": lambda codes: set(Store.objects.filter(code__in=codes).values_list("code", flat=True)),
        "segments": lambda codes: set(codes) & set(Segment.values),
        "lifecycle": lambda codes: set(codes) & set(Lifecycle.values),
        "channels": lambda codes: set(codes) & set(PurchaseChannel.values),
    }
    for key, found in known.items():
        codes = [str(code) for code in target.get(key) or []]
        if codes:
            _codes_error(errors, f"target.{key}", set(codes) - found(codes))


def _normalise_target(target):
    return {key: [str(code) for code in (target or {}).get(key) or []] for key in TARGET_KEYS}


def _normalised(values):
    """Values as the campaign keeps them: a target with every key, variants with every field."""
    values = dict(values)
    if "coupon_template" in values or "coupon_template_id" in values:  # the API's `coupon_template`: a template id
        raw = values.pop("coupon_template", values.get("coupon_template_id"))
        raw = getattr(raw, "pk", raw)  # the admin's form gives the template itself
        values["coupon_template_id"] = None if raw in (None, "") else int(raw) if str(raw).isdigit() else "unknown"
    if "target" in values:
        values["target"] = _normalise_target(values["target"])
    if "variants" in values:
        values["variants"] = [
            {
                "code": v["code"],
                "weight": v["weight"],
                "multiplier": v.get("multiplier"),
                "bonus_points": v.get("bonus_points"),
            }
            for v in values["variants"] or []
        ]
    return values


def _lock(campaign_id):
    campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
    if campaign is None:
        raise NotFoundError(gettext("No campaign with this id."))
    return campaign


def _terms_of(campaign):
    values = {name: getattr(campaign, name) for name in EDITABLE if name != "variants"}
    values["variants"] = [
        {"code": v.code, "weight": v.weight, "multiplier": v.multiplier, "bonus_points": v.bonus_points}
        for v in campaign.variants.order_by("id")
    ]
    return values


def _write_variants(campaign, variants):
    campaign.variants.all().delete()
    CampaignVariant.objects.bulk_create(
        [
            CampaignVariant(
                campaign=campaign,
                code=v["code"],
                weight=v["weight"],
                multiplier=v.get("multiplier"),
                bonus_points=v.get("bonus_points"),
            )
            for v in variants
        ]
    )
    # bulk_create sends no post_save: forget the compiled campaigns ourselves.
    campaign.save(update_fields=["updated_at"])


def create_campaign(*, actor, values):
    values = _normalised({**values, "target": values.get("target")})
    check_terms(values)
    variants = values.pop("variants", None) or []
    with transaction.atomic(durable=True):
        campaign = Campaign.objects.create(**values, status=CampaignStatus.DRAFT, created_by=actor)
        _write_variants(campaign, variants)
        record_audit(actor=actor, action="campaign.created", target=campaign, new=_terms_of(campaign))
    return campaign


def change_campaign(*, actor, campaign_id, changes):
    """Change a campaign that is not running (draft or paused). CampaignRunning / CampaignEnded otherwise."""
    with transaction.atomic(durable=True):
        campaign = _lock(campaign_id)
        now = timezone.now()
        status = campaign.status_at(now)
        old = _terms_of(campaign)
        changes = _normalised(changes)
        changed = {name for name, value in changes.items() if old.get(name) != value}
        if status == CampaignStatus.ENDED:
            raise CampaignEnded()
        if status in (CampaignStatus.ACTIVE, CampaignStatus.SCHEDULED) and changed & set(TERMS):
            raise CampaignRunning(fields=sorted(API_NAMES.get(name, name) for name in changed & set(TERMS)))
        if changed & set(SPLIT) and CampaignAssignment.objects.filter(campaign=campaign).exists():
            raise InvalidInput(
                {
                    name: [
                        gettext("Members are already assigned to this campaign's groups: copy it to split them anew.")
                    ]
                    for name in sorted(changed & set(SPLIT))
                }
            )
        merged = {**old, **changes}
        check_terms(merged, campaign=campaign)
        for name, value in changes.items():
            if name != "variants":
                setattr(campaign, name, value)
        campaign.save()
        if "variants" in changes:
            _write_variants(campaign, changes["variants"])
        new = _terms_of(campaign)
        record_audit(
            actor=actor,
            action="campaign.changed",
            target=campaign,
            old={k: v for k, v in old.items() if old[k] != new[k]},
            new={k: v for k, v in new.items() if old[k] != new[k]},
        )
    return campaign


def _set_status(campaign, status, *, actor, action, **fields):
    old = campaign.status
    campaign.status = status
    for name, value in fields.items():
        setattr(campaign, name, value)
    campaign.save(update_fields=["status", "updated_at", *fields])
    record_audit(actor=actor, action=action, target=campaign, old={"status": old}, new={"status": status})
    events.emit(  # the action names the event: campaign.activated, campaign.paused, campaign.ended
        action,
        {
            "campaign": str(campaign.pk),
            "name": campaign.name,
            "kind": campaign.kind,
            "status": campaign.status_at(timezone.now()),
            "status_before": old,
            "starts_at": campaign.starts_at,
            "ends_at": campaign.ends_at,
        },
    )
    return campaign


def activate_campaign(*, actor, campaign_id):
    """Draft or paused → running (it shows as scheduled until it starts). Running already: unchanged."""
    with transaction.atomic(durable=True):
        campaign = _lock(campaign_id)
        now = timezone.now()
        status = campaign.status_at(now)
        if status == CampaignStatus.ENDED or (campaign.ends_at is not None and campaign.ends_at <= now):
            raise CampaignEnded(gettext("The campaign's end has passed: change its end, or copy it, to run it."))
        if status in (CampaignStatus.ACTIVE, CampaignStatus.SCHEDULED):
            return campaign
        check_terms(_terms_of(campaign), campaign=campaign)
        return _set_status(
            campaign,
            CampaignStatus.ACTIVE,
            actor=actor,
            action="campaign.activated",
            activated_at=campaign.activated_at or now,
        )


def pause_campaign(*, actor, campaign_id):
    with transaction.atomic(durable=True):
        campaign = _lock(campaign_id)
        status = campaign.status_at(timezone.now())
        if status == CampaignStatus.PAUSED:
            return campaign
        if status not in (CampaignStatus.ACTIVE, CampaignStatus.SCHEDULED):
            raise InvalidStatusChange(
                gettext("A %(status)s campaign cannot be paused.") % {"status": CampaignStatus(status).label}
            )
        return _set_status(campaign, CampaignStatus.PAUSED, actor=actor, action="campaign.paused")


def end_campaign(*, actor, campaign_id):
    with transaction.atomic(durable=True):
        campaign = _lock(campaign_id)
        if campaign.status_at(timezone.now()) == CampaignStatus.ENDED:
            return campaign
        fields = {} if campaign.ends_at and campaign.ends_at <= timezone.now() else {"ends_at": timezone.now()}
        if fields and fields["ends_at"] <= campaign.starts_at:
            fields = {}
        return _set_status(campaign, CampaignStatus.ENDED, actor=actor, action="campaign.ended", **fields)


def copy_campaign(*, actor, campaign_id, changes=None):
    """A new draft with the campaign's terms (and `changes`), its budget unused: the way to run a changed version
    of a running or ended campaign."""
    source = Campaign.objects.filter(pk=campaign_id).first()
    if source is None:
        raise NotFoundError(gettext("No campaign with this id."))
    values = {**_terms_of(source), "name": source.name, "description": source.description, **(changes or {})}
    values["copied_from"] = source
    campaign = create_campaign(actor=actor, values=values)
    return campaign


def delete_campaign(*, actor, campaign_id):
    """Only a draft that never awarded anything is deleted; end the others."""
    with transaction.atomic(durable=True):
        campaign = _lock(campaign_id)
        if campaign.status != CampaignStatus.DRAFT or CampaignAward.objects.filter(campaign=campaign).exists():
            raise InvalidStatusChange(gettext("Only a draft is deleted: end a campaign that ran."))
        record_audit(actor=actor, action="campaign.deleted", target=campaign, old=_terms_of(campaign))
        campaign.delete()
