"""Every write on points, by name. Views, admin, commands and jobs call these; nothing else writes the ledger."""

from .approvals import (
    AlreadyDecided,
    ApprovalLimit,
    OwnRequest,
    approve_adjustment,
    reject_adjustment,
    request_adjustment,
)
from .configuration import (
    add_earning_rule_version,
    add_points_policy,
    add_reward_version,
    change_earning_rule,
    change_reward,
    create_earning_rule,
    create_reward,
    deactivate_earning_rule,
    deactivate_reward,
)
from .engagement import AlreadyReviewed, AlreadySignedIn, OrderNotEligible, award_birthday_points, record_event
from .idempotency import AlreadyRecorded, IdempotencyConflict, IdempotencyKeyRequired, request_fingerprint
from .ledger import InsufficientPoints, current_policy, expires_at_for
from .maintenance import expire_points, release_pending
from .purchases import (
    AlreadyDeducted,
    DeductionLimit,
    Outcome,
    RefundExceedsPurchase,
    preview_purchase,
    record_purchase,
    record_refund,
)
from .spending import (
    AdjustmentLimit,
    AlreadyCancelled,
    LimitReached,
    OutOfStock,
    RewardUnavailable,
    adjust_points,
    cancel_redemption,
    deduct_points,
    redeem_reward,
)
from .transfers import NotSameHousehold, TransferDisabled, TransferLimit, transfer_points

__all__ = [
    "AdjustmentLimit", "AlreadyCancelled", "AlreadyDecided", "AlreadyDeducted", "AlreadyRecorded", "AlreadyReviewed",
    "AlreadySignedIn", "ApprovalLimit", "DeductionLimit", "IdempotencyConflict", "IdempotencyKeyRequired",
    "InsufficientPoints", "LimitReached", "NotSameHousehold", "OrderNotEligible", "OutOfStock", "Outcome",
    "OwnRequest", "RefundExceedsPurchase", "RewardUnavailable", "TransferDisabled", "TransferLimit",
    "add_earning_rule_version", "add_points_policy", "add_reward_version", "adjust_points", "approve_adjustment",
    "award_birthday_points", "cancel_redemption", "change_earning_rule", "change_reward", "create_earning_rule",
    "create_reward", "current_policy", "deactivate_earning_rule", "deactivate_reward", "deduct_points",
    "expire_points", "expires_at_for", "preview_purchase", "record_event", "record_purchase", "record_refund",
    "redeem_reward", "reject_adjustment", "release_pending", "request_adjustment", "request_fingerprint",
    "transfer_points",
]
