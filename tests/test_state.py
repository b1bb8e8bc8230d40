"""The state store keeps restored entries as raw bytes and spots intents without decoding them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from highlight.dedup import Entry, Phase, encode_entry
from highlight.state import INTENT_MARK, _is_intent

texts = st.text(max_size=40)


@given(phase=st.sampled_from(list(Phase)), event_id=texts, start=st.none() | texts, message=st.none() | texts)
def test_raw_bytes_are_recognised_as_an_intent_exactly_when_the_entry_is_one(
    phase: Phase, event_id: str, start: str | None, message: str | None
) -> None:
    entry = Entry(phase, event_id, start_time=start, end_time=start, error_message=message)
    assert _is_intent(encode_entry(entry)) == (phase is Phase.INTENT)
    assert _is_intent(entry) == (phase is Phase.INTENT)


def test_an_event_id_quoting_the_mark_is_not_mistaken_for_an_intent() -> None:
    tricky = Entry(Phase.STARTED, INTENT_MARK.decode(), task_id="1")
    assert not _is_intent(encode_entry(tricky))
