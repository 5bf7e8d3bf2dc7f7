"""Every write on members, tags, client apps, logins and messages, by name. Views and admin call these."""

from .access import (
    authenticate_api_key,
    create_api_client,
    issue_member_tokens,
    issue_staff_token,
    read_member_token,
    refresh_member_access,
    request_login_code,
    revoke_staff_token,
    verify_login_code,
)
from .membership import (
    MemberAnonymised,
    MemberExists,
    MemberFrozen,
    add_member_tag,
    anonymise_member,
    ensure_member_active,
    freeze_member,
    register_member,
    remove_member_tag,
    unfreeze_member,
    update_member,
)

__all__ = [
    "MemberAnonymised",
    "MemberExists",
    "MemberFrozen",
    "add_member_tag",
    "anonymise_member",
    "authenticate_api_key",
    "create_api_client",
    "ensure_member_active",
    "freeze_member",
    "issue_member_tokens",
    "issue_staff_token",
    "read_member_token",
    "refresh_member_access",
    "register_member",
    "remove_member_tag",
    "request_login_code",
    "revoke_staff_token",
    "unfreeze_member",
    "update_member",
    "verify_login_code",
]
