"""Every write on members, tags and member logins, by name. Views and admin call these."""

from .households import HouseholdConflict, leave_household, link_household
from .login import (
    issue_member_tokens,
    read_member_token,
    refresh_member_tokens,
    request_login_code,
    revoke_member_tokens,
    verify_login_code,
)
from .membership import (
    MemberAnonymised,
    MemberExists,
    MemberFrozen,
    MemberMerged,
    WechatIdentityTaken,
    add_member_tag,
    add_wechat_identity,
    anonymise_member,
    ensure_member_active,
    freeze_member,
    register_member,
    remove_member_tag,
    unfreeze_member,
    update_member,
)
from .merge import merge_members

__all__ = [
    "HouseholdConflict",
    "MemberAnonymised",
    "MemberExists",
    "MemberFrozen",
    "MemberMerged",
    "WechatIdentityTaken",
    "add_member_tag",
    "add_wechat_identity",
    "anonymise_member",
    "ensure_member_active",
    "freeze_member",
    "issue_member_tokens",
    "leave_household",
    "link_household",
    "merge_members",
    "read_member_token",
    "refresh_member_tokens",
    "register_member",
    "remove_member_tag",
    "request_login_code",
    "revoke_member_tokens",
    "unfreeze_member",
    "update_member",
    "verify_login_code",
]
