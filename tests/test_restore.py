"""Reading the state log back (highlight.restore), without a broker: which record counts."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from highlight.dedup import DedupKey, Entry, Phase, encode_entry, encode_key
from highlight.kafka import Partition
from highlight.lease import OWNER_HEADER, RELEASE_KEY, Claim, Release, encode_claim, encode_release
from highlight.restore import replayer

NOW = 1_714_536_000.0
BUCKET = 300
P0 = Partition("state", 0)
KEY: DedupKey = ("ch", int(NOW) // BUCKET)


class Log:
    """The store's side of a read: its tables, tails and claims, and the function that applies each record."""

    def __init__(self) -> None:
        self.tables: dict[int, dict[DedupKey, Entry | bytes]] = {0: {}}
        self.tails: dict[int, Release | None] = {}
        self.claims: dict[int, bytes] = {}
        self.apply = replayer(
            self.tables,
            self.tails,
            self.claims,
            set(),
            now=NOW,
            bucket_seconds=BUCKET,
            max_age=120,
            keep_until=lambda _k, _v: 0.0,
        )


def replay() -> Log:
    return Log()


def claim(owner: str, after: str | None) -> tuple[bytes, bytes, tuple[()]]:
    made = Claim(owner, after, 7, f"member-{owner}")
    return made.key, encode_claim(made), ()


def entry(phase: Phase, event: str = "e") -> bytes:
    return encode_entry(Entry(phase, event, "2024-05-01 12:00:00", "2024-05-01 12:05:00"))


def by(owner: str) -> tuple[tuple[str, bytes], ...]:
    return ((OWNER_HEADER, owner.encode()),)


def test_a_claim_counts_when_it_is_the_first_or_names_the_claim_that_counts() -> None:
    log = replay()
    for record in (claim("a", None), claim("b", "a"), claim("late", "a"), claim("c", "b")):
        log.apply(P0, *record)
    assert log.claims == {0: b"c"}


def test_after_a_claim_only_its_owners_records_and_records_without_an_owner_count() -> None:
    log = replay()
    log.apply(P0, *claim("a", None))
    log.apply(P0, encode_key(KEY), entry(Phase.INTENT, "ours"), by("a"))
    log.apply(P0, *claim("b", "a"))
    log.apply(P0, encode_key(KEY), entry(Phase.INTENT, "theirs"), by("b"))
    log.apply(P0, encode_key(KEY), None, by("a"))  # the earlier owner's withdrawal, landing late
    assert log.tables[0][KEY] == entry(Phase.INTENT, "theirs")
    log.apply(P0, encode_key(KEY), entry(Phase.FAILED, "older-version"), ())
    assert log.tables[0][KEY] == entry(Phase.FAILED, "older-version"), "a record of a version before claims counts"


def test_a_claim_ends_a_clean_handover_and_a_late_release_does_not_bring_it_back() -> None:
    log = replay()
    log.apply(P0, *claim("a", None))
    log.apply(P0, RELEASE_KEY, encode_release(Release(3, "member-a")), by("a"))
    assert log.tails == {0: Release(3, "member-a")}
    log.apply(P0, *claim("b", "a"))
    assert log.tails == {0: None}, "someone took the index over after the release"
    log.apply(P0, RELEASE_KEY, encode_release(Release(3, "member-a")), by("a"))
    assert log.tails == {0: None}


_late_records = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from([encode_key(KEY), encode_key(("ch", KEY[1] + 1)), encode_key(("other", KEY[1]))]),
            st.none() | st.sampled_from([entry(p) for p in Phase]),
        ),
        st.just((RELEASE_KEY, encode_release(Release(2, "member-a")))),
        st.sampled_from([claim("late-1", "a")[:2], claim("late-2", None)[:2]]),
    ),
    max_size=12,
)


@given(before=st.lists(st.sampled_from([entry(p, "b") for p in Phase]), max_size=3), late=_late_records)
def test_records_put_under_a_superseded_claim_change_nothing_whatever_they_are(
    before: list[bytes], late: list[tuple[bytes, bytes | None]]
) -> None:
    log = replay()
    log.apply(P0, *claim("a", None))
    log.apply(P0, *claim("b", "a"))
    for value in before:
        log.apply(P0, encode_key(KEY), value, by("b"))
    seen: dict[str, Any] = copy.deepcopy({"tables": log.tables, "tails": log.tails, "claims": log.claims})
    for key, value in late:
        headers = () if key.startswith(b'{"highlight":"claim"') else by("a")
        log.apply(P0, key, value, headers)
    assert {"tables": log.tables, "tails": log.tails, "claims": log.claims} == seen
