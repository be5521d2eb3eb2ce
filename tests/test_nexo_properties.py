"""Properties of the nexo codec: every message round-trips; no input crashes the parsers.

"Crash" means any exception but NexoProtocolError: a terminal, or anything
else that answers on its port, must not be able to raise a KeyError or an
expat error inside the driver.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.nexo import codec, http
from drivers.nexo import messages as m
from drivers.nexo.errors import NexoProtocolError

bounded = settings(deadline=None, max_examples=150)

# Characters XML 1.0 can carry, without the control range.
xml_chars = st.characters(min_codepoint=0x20, max_codepoint=0xD7FF)
text = st.text(xml_chars, max_size=40)
stripped = text.map(str.strip)
word = st.text(xml_chars, min_size=1, max_size=20).map(str.strip).filter(bool)
ids = st.text("0123456789", min_size=1, max_size=10)
amounts = st.integers(0, m.MAX_AMOUNT_ORE)
# Receipt lines come back masked: no long digit runs here (masking has its own tests).
receipt_lines = st.lists(
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x2FF).filter(lambda c: not c.isdigit()),
        max_size=30,
    ),
    max_size=6,
).map(tuple)
masked_pans = st.one_of(st.just(""), st.from_regex(r"\A[0-9]{6}\*{3,9}[0-9]{4}\Z"))
results = st.builds(
    m.Result,
    st.sampled_from(m.RESULTS),
    st.one_of(st.none(), st.sampled_from(m.ERROR_CONDITIONS)),
    st.one_of(st.none(), text),
)

payment_responses = st.builds(
    m.PaymentResponse,
    results,
    transaction_id=text,
    timestamp=text,
    poi_transaction_id=text,
    poi_timestamp=text,
    payment_type=st.sampled_from(m.PAYMENT_TYPES),
    payment_brand=text,
    masked_pan=masked_pans,
    entry_mode=text,
    authorized_amount=st.one_of(st.none(), amounts),
    currency=st.just("SEK"),
    approval_code=stripped,
    online=st.one_of(st.none(), st.booleans()),
    customer_receipt=receipt_lines,
    cashier_receipt=receipt_lines,
)
reversal_responses = st.builds(
    m.ReversalResponse,
    results,
    poi_transaction_id=text,
    poi_timestamp=text,
    reversed_amount=st.one_of(st.none(), amounts),
    customer_receipt=receipt_lines,
)


def with_header(body: st.SearchStrategy[m.Body]) -> st.SearchStrategy[m.Message]:
    return st.builds(m.message, body, ids, text, text)


bodies = st.one_of(
    st.builds(
        m.LoginRequest,
        stripped,
        text,
        text,
        text,
        language=word,
        capabilities=st.lists(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1), max_size=4).map(
            tuple
        ),
    ),
    st.builds(m.LoginResponse, results, text, text, text),
    st.builds(
        m.PaymentRequest,
        word,
        text,
        amounts,
        st.just("SEK"),
        st.sampled_from(m.PAYMENT_TYPES),
    ),
    payment_responses,
    st.builds(m.ReversalRequest, word, text, word),
    reversal_responses,
    st.builds(m.AbortRequest, ids, st.sampled_from(m.CATEGORIES), stripped),
    st.one_of(
        st.just(m.TransactionStatusRequest()),
        st.builds(m.TransactionStatusRequest, ids, st.sampled_from(("Payment", "Reversal"))),
    ),
    st.builds(
        m.TransactionStatusResponse,
        results,
        st.one_of(st.none(), with_header(st.one_of(payment_responses, reversal_responses))),
    ),
    st.builds(m.ReconciliationRequest, st.sampled_from(m.RECONCILIATION_TYPES)),
    st.builds(
        m.ReconciliationResponse,
        results,
        st.sampled_from(m.RECONCILIATION_TYPES),
        st.lists(st.builds(m.Totals, st.integers(0, 10**9 - 1), amounts), max_size=4).map(tuple),
    ),
    st.just(m.DiagnosisRequest()),
    st.builds(m.DiagnosisResponse, results, text),
)


@bounded
@given(with_header(bodies))
def test_every_message_round_trips(msg: m.Message) -> None:
    assert codec.decode(codec.encode(msg)) == msg


def decoded_or_refused(data: bytes) -> m.Message | None:
    """The message in `data`, or None when the codec refused it with its own error.

    Whatever the codec accepts, it must write back as the same message."""
    try:
        msg = codec.decode(data)
    except NexoProtocolError:
        return None
    assert codec.decode(codec.encode(msg)) == msg
    return msg


@bounded
@given(amounts)
def test_amounts_round_trip(ore: int) -> None:
    assert m.parse_amount(m.format_amount(ore)) == ore


@bounded
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_the_drivers_error(data: bytes) -> None:
    decoded_or_refused(data)


@bounded
@given(with_header(bodies), st.data())
def test_damaged_messages_raise_only_the_drivers_error(msg: m.Message, data: st.DataObject) -> None:
    encoded = bytearray(codec.encode(msg))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(encoded) - 1))
        action = data.draw(st.sampled_from(("replace", "delete", "insert")))
        byte = data.draw(st.sampled_from(b"<>/=\"'& \x00\xffaZ09"))
        if action == "replace":
            encoded[at] = byte
        elif action == "delete":
            del encoded[at]
        else:
            encoded.insert(at, byte)
    decoded_or_refused(bytes(encoded))


@bounded
@given(
    st.recursive(
        st.sampled_from(["Response", "MessageHeader", "PaymentResponse", "SaleToPOIResponse"]),
        lambda inner: st.tuples(inner, st.lists(inner, max_size=3)),
        max_leaves=12,
    ),
    st.dictionaries(
        st.sampled_from(["Result", "MessageCategory", "MessageType", "ServiceID", "OnlineFlag"]),
        text,
        max_size=4,
    ),
)
def test_random_element_trees_raise_only_the_drivers_error(tree, attrs) -> None:
    def render(node) -> str:
        if isinstance(node, str):
            extra = "".join(
                f' {k}="{v.replace("&", "").replace("<", "").replace(chr(34), "")}"'
                for k, v in attrs.items()
            )
            return f"<{node}{extra}/>"
        name, children = node
        name = name if isinstance(name, str) else "Nested"
        return f"<{name}>{''.join(render(c) for c in children)}</{name}>"

    xml = f"<SaleToPOIResponse>{render(tree)}</SaleToPOIResponse>".encode()
    decoded_or_refused(xml)


@bounded
@given(st.binary(max_size=3000))
def test_random_bytes_into_the_http_reader_raise_only_the_drivers_error(data: bytes) -> None:
    async def read() -> None:
        reader = asyncio.StreamReader(limit=http.MAX_HEAD_BYTES + 1000)
        reader.feed_data(data)
        reader.feed_eof()
        try:
            message = await http.read_message(reader)
            assert message.status >= 0
        except NexoProtocolError:
            pass

    asyncio.run(read())
