"""The first and the last statements of a points write that locks one member's account (an engagement event, a
redemption), by loyalty.batch's transport: on PostgreSQL the idempotency claim, the account lock and the reads
under it go in one round trip with the transaction's BEGIN (pipeline mode), and the account's balances and the
answer kept for retries in one statement at the end (a data-modifying CTE); elsewhere the same statements one
after the other. What the service decides from their answers is the same code either way."""

from dataclasses import dataclass

from loyalty import batch
from members.models import Member
from points.models import IdempotencyRecord, PointsAccount

from . import idempotency
from .ledger import lock_accounts, refuse_closed, save_account


@dataclass
class Opened:
    claim: idempotency.Claim
    account: PointsAccount | None
    member: Member | None
    member_id: int
    more: list

    @property
    def read_under_lock(self):
        """Whether the reads after the lock were made under it: not when her account did not exist yet (nothing
        was locked then; locked_account makes it, and the member is read again)."""
        return self.account is not None

    def locked_account(self):
        """The member's locked account; a missing one is made and locked now (lock_accounts) and the member read
        again under its lock, a closed one refused (MemberMerged), as lock_account does."""
        if self.account is None:
            account = lock_accounts([self.member_id])[self.member_id]
            self.member = Member.objects.filter(pk=self.member_id).first()
            return account
        refuse_closed({self.member_id: self.account})
        return self.account


def open_locked(*, scope, key, fingerprint, member_id, more=()):
    """Send, in this order: the idempotency claim, the member's account locked (FOR UPDATE), her row, then each of
    `more` (callables that send one statement under the lock: batch.select(...), answered as model lists in
    Opened.more). The caller judges the answers in the order a service that waited for each would."""
    with batch.pipelined():
        claim_sent = idempotency.send_claim(scope=scope, key=key, fingerprint=fingerprint)
        account_sent = batch.select(PointsAccount, "member_id = %s", [member_id], lock=True)
        member_sent = batch.select(Member, "id = %s", [member_id])
        more_sent = [send() for send in more]
        claim_sent.rows()  # the first answer read sends them all
        accounts, members = account_sent.models(), member_sent.models()
        more_answers = [sent.models() for sent in more_sent]
    return Opened(
        claim=idempotency.claim_from(claim_sent, scope=scope, key=key, fingerprint=fingerprint),
        account=accounts[0] if accounts else None,
        member=members[0] if members else None,
        member_id=member_id,
        more=more_answers,
    )


def finish_locked(account, claim, result, status_code=201):
    """The account's balances saved and the answer kept for retries: one statement on PostgreSQL (fast path),
    save_account and idempotency.complete elsewhere."""
    if not batch.fast():
        save_account(account)
        idempotency.complete(claim, response=result, status_code=status_code)
        return
    batch.execute(*finishing_statement(account, claim, result, status_code=status_code))


def finishing_statement(account, claim, result, *, status_code=201, before=()):
    """The fast path's last statement of a write that locked one account: `before` (data-modifying statements of
    the caller, as (sql, params) or (sql, params, name), e.g. a purchase's row), the answer kept for retries and the
    account's balances, as data-modifying CTEs of one UPDATE. Returns (sql, params) for batch.execute."""
    ctes = [
        *before,
        (
            f"UPDATE {IdempotencyRecord._meta.db_table} SET response = %s, status_code = %s WHERE id = %s",  # noqa: S608
            [idempotency.response_text(result), status_code, claim.record_id],
        ),
    ]  # the table names are ours; every value is bound
    assignments, params = batch.update_values(
        account, [f.name for f in PointsAccount._meta.concrete_fields if not f.primary_key]
    )
    update = f"UPDATE {PointsAccount._meta.db_table} SET {assignments} WHERE member_id = %s"  # noqa: S608
    return batch.combined([*ctes, (update, [*params, account.member_id])])
