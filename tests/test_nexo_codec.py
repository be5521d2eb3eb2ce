"""The nexo codec against the facts of Swedbank Pay's public examples, and hostile XML.

Golden files (tests/golden/nexo) hold requests written from those facts
(ServiceID, SaleID 1, POIID AJACQH28, the sample amounts and ids); the
encoder must produce the same XML, compared in canonical form.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from drivers.nexo import cards, codec
from drivers.nexo import messages as m
from drivers.nexo.errors import NexoProtocolError
from drivers.nexo.xmlsafe import MAX_XML_BYTES

GOLDEN = Path(__file__).parent / "golden" / "nexo"


def canonical(xml: bytes | str) -> str:
    text = xml.decode() if isinstance(xml, bytes) else xml
    text = text.split("?>", 1)[1] if text.lstrip().startswith("<?xml") else text
    return ET.canonicalize(xml_data=text, strip_text=True)


GOLDEN_REQUESTS = {
    "login_request": (
        m.LoginRequest("2023-08-24T17:01:00+02:00", "tilld", "tilld", "1.0"),
        "1",
    ),
    "payment_request": (m.PaymentRequest("1703372", "2023-08-24T17:03:37+02:00", 5600), "3"),
    "refund_request": (
        m.PaymentRequest("1703373", "2023-08-24T17:10:00+02:00", 3850, payment_type="Refund"),
        "4",
    ),
    "abort_request": (m.AbortRequest("3", "Payment", "Cancelled by the cashier"), "5"),
    "transaction_status_request": (m.TransactionStatusRequest("002131", "Payment"), "002141"),
    "last_transaction_status_request": (m.TransactionStatusRequest(), "7"),
    "reversal_request": (
        m.ReversalRequest("8778880185", "2023-08-24T15:04:00.498Z", "MerchantCancel"),
        "6",
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_REQUESTS))
def test_requests_are_byte_for_byte_the_golden_xml_in_canonical_form(name: str) -> None:
    body, service_id = GOLDEN_REQUESTS[name]
    encoded = codec.encode(m.message(body, service_id, "1", "AJACQH28"))
    golden = (GOLDEN / f"{name}.xml").read_bytes()
    assert canonical(encoded) == canonical(golden)
    # and the golden file reads back as the same message
    assert codec.decode(golden) == m.message(body, service_id, "1", "AJACQH28")


def payment_response_xml(result: str = '<Response Result="Success"/>', receipt: str = "") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<SaleToPOIResponse>
 <MessageHeader MessageClass="Service" MessageCategory="Payment" MessageType="Response"
   ServiceID="3" SaleID="1" POIID="AJACQH28"/>
 <PaymentResponse>
  {result}
  <SaleData><SaleTransactionID TransactionID="1703372" TimeStamp="2023-08-24T17:03:37+02:00"/>
  </SaleData>
  <POIData><POITransactionID TransactionID="8778880185" TimeStamp="2023-08-24T15:04:00.498Z"/>
  </POIData>
  <PaymentResult PaymentType="Normal">
   <PaymentInstrumentData PaymentInstrumentType="Card">
    <CardData PaymentBrand="01,Mastercard Debit" MaskedPAN="516815******9659"
      EntryMode="Contactless"><PaymentToken TokenRequestedType="Customer" TokenValue="AB12"/>
    </CardData>
   </PaymentInstrumentData>
   <AmountsResp Currency="SEK" AuthorizedAmount="56" CashBackAmount="0.00"/>
   <PaymentAcquirerData MerchantID="10020001" AcquirerPOIID="877888">
    <ApprovalCode>611506</ApprovalCode>
   </PaymentAcquirerData>
  </PaymentResult>
  {receipt}
 </PaymentResponse>
</SaleToPOIResponse>
""".encode()


def test_an_approved_payment_response_gives_brand_masked_pan_amount_and_ids() -> None:
    lines = ("Test shop", "Mastercard", "************9659", "RRN: 8778880185", "KÖP 56,00 SEK")
    receipt = (
        '<PaymentReceipt DocumentQualifier="CustomerReceipt"><OutputContent OutputFormat="Text">'
        f"<OutputText>{cards.encode_receipt(lines)}</OutputText></OutputContent></PaymentReceipt>"
    )
    msg = codec.decode(payment_response_xml(receipt=receipt))
    assert msg.header == m.Header("Payment", "Response", "3", "1", "AJACQH28")
    body = msg.body
    assert isinstance(body, m.PaymentResponse)
    assert body.response.ok
    assert (body.transaction_id, body.poi_transaction_id) == ("1703372", "8778880185")
    assert body.authorized_amount == 5600 and body.currency == "SEK"
    assert body.masked_pan == "516815******9659" and body.approval_code == "611506"
    assert cards.brand_of(body.payment_brand) == ("mastercard", "Mastercard Debit")
    assert body.online is None  # the sample does not say
    assert body.customer_receipt == lines


def test_a_declined_payment_keeps_the_error_condition_and_text() -> None:
    failure = (
        '<Response Result="Failure" ErrorCondition="Refusal">'
        "<AdditionalResponse>declined by the issuer</AdditionalResponse></Response>"
    )
    body = codec.decode(payment_response_xml(failure)).body
    assert isinstance(body, m.PaymentResponse)
    assert body.response == m.Result("Failure", "Refusal", "declined by the issuer")


def test_a_transaction_status_response_carries_the_whole_repeated_payment() -> None:
    inner = payment_response_xml().decode().split("<SaleToPOIResponse>", 1)[1]
    inner = inner.rsplit("</SaleToPOIResponse>", 1)[0]
    xml = f"""<SaleToPOIResponse>
 <MessageHeader ProtocolVersion="3.1" MessageClass="Service" MessageCategory="TransactionStatus"
   MessageType="Response" ServiceID="18" SaleID="1" POIID="AJACQH28"/>
 <TransactionStatusResponse><Response Result="Success"/>
  <RepeatedMessageResponse>{inner}</RepeatedMessageResponse>
 </TransactionStatusResponse>
</SaleToPOIResponse>""".encode()
    body = codec.decode(xml).body
    assert isinstance(body, m.TransactionStatusResponse) and body.repeated is not None
    assert body.repeated.header.service_id == "3"
    assert isinstance(body.repeated.body, m.PaymentResponse)
    assert body.repeated.body.poi_transaction_id == "8778880185"


def test_a_running_payment_answers_busy() -> None:
    xml = b"""<SaleToPOIResponse><MessageHeader MessageClass="Service"
 MessageCategory="TransactionStatus" MessageType="Response" ServiceID="19" SaleID="1" POIID="P"/>
 <TransactionStatusResponse><Response Result="Failure" ErrorCondition="Busy"/>
 </TransactionStatusResponse></SaleToPOIResponse>"""
    body = codec.decode(xml).body
    assert isinstance(body, m.TransactionStatusResponse)
    assert body.response.error_condition == "Busy" and body.repeated is None


def test_namespaced_xml_reads_like_plain_xml() -> None:
    xml = payment_response_xml().replace(
        b"<SaleToPOIResponse>", b'<SaleToPOIResponse xmlns="urn:nexo:example">'
    )
    assert codec.decode(xml) == codec.decode(payment_response_xml())


def test_a_full_card_number_from_the_terminal_is_masked_to_first_6_last_4() -> None:
    xml = payment_response_xml().replace(b"516815******9659", b"5168150000009659")
    receipt = cards.encode_receipt(("Card 5168 1500 0000 9659", "ref 12345"))
    body = codec.decode(
        xml.replace(
            b"</PaymentResult>",
            b'</PaymentResult><PaymentReceipt DocumentQualifier="CustomerReceipt"><OutputContent>'
            b"<OutputText>" + receipt.encode() + b"</OutputText></OutputContent></PaymentReceipt>",
        )
    ).body
    assert isinstance(body, m.PaymentResponse)
    assert body.masked_pan == "516815******9659"
    assert body.customer_receipt == ("Card 516815******9659", "ref 12345")


@pytest.mark.parametrize(
    "hostile",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b"<SaleToPOIResponse>&lol2;</SaleToPOIResponse>",
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><SaleToPOIResponse>&x;'
        b"</SaleToPOIResponse>",
        b'<?xml-stylesheet href="x"?><SaleToPOIResponse/>',
        b"<SaleToPOIResponse>" + b"<a>" * 3000 + b"</a>" * 3000 + b"</SaleToPOIResponse>",
        b"<SaleToPOIResponse>" + b" " * (MAX_XML_BYTES + 1) + b"</SaleToPOIResponse>",
        b"",
        b"\x00\xff\xfe",
        b"<SaleToPOIResponse><MessageHeader/></SaleToPOIResponse>",
        b"<Other/>",
        b'<?xml version="1.0" encoding="no-such-encoding"?><SaleToPOIResponse/>',
    ],
)
def test_hostile_or_broken_xml_is_refused_with_the_drivers_error(hostile: bytes) -> None:
    with pytest.raises(NexoProtocolError):
        codec.decode(hostile)


@pytest.mark.parametrize(
    ("text", "ore"), [("56", 5600), ("38.50", 3850), ("38.5", 3850), ("0.01", 1), ("0", 0)]
)
def test_amounts_are_decimal_kronor_on_the_wire(text: str, ore: int) -> None:
    assert m.parse_amount(text) == ore


@pytest.mark.parametrize("text", ["1.234", "-1", "1e3", "", "1,50", "NaN", "1.2.3"])
def test_amounts_that_are_not_whole_ore_are_refused(text: str) -> None:
    with pytest.raises(NexoProtocolError):
        m.parse_amount(text)


@pytest.mark.parametrize(
    ("brand", "expected"),
    [
        ("01,Mastercard Debit", "mastercard"),
        ("02,Visa", "visa"),
        ("03,Maestro", "maestro"),
        ("04,Visa Electron", "visa-electron"),
        ("05,V PAY", "vpay"),
        ("06,American Express", "amex"),
        ("Diners Club", "diners-club"),
    ],
)
def test_brands_map_to_the_names_the_card_rules_use(brand: str, expected: str) -> None:
    assert cards.brand_of(brand)[0] == expected
