"""nexo messages to XML and back (the Swedbank Pay PAX form of nexo 3.1).

`encode` writes what messages.py models; `decode` reads it, ignoring
elements it does not use and raising NexoProtocolError, never anything
else, for input it cannot use. Receipt lines are masked on the way in.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from . import cards
from .errors import NexoProtocolError
from .messages import (
    BY_ELEMENT,
    KINDS,
    AbortRequest,
    Body,
    DiagnosisRequest,
    DiagnosisResponse,
    Header,
    LoginRequest,
    LoginResponse,
    Message,
    PaymentRequest,
    PaymentResponse,
    ReconciliationRequest,
    ReconciliationResponse,
    Result,
    ReversalRequest,
    ReversalResponse,
    Totals,
    TransactionStatusRequest,
    TransactionStatusResponse,
    format_amount,
    parse_amount,
)
from .xmlsafe import parse_xml

MAX_ATTRIBUTE = 1024  # characters; a ServiceID is 10, a brand name a few dozen


# -- encoding -------------------------------------------------------------------


def encode(msg: Message) -> bytes:
    root_name = "SaleToPOIResponse" if msg.header.type == "Response" else "SaleToPOIRequest"
    root = ET.Element(root_name)
    _header(root, msg.header)
    _body(root, msg.body, msg.header)
    ET.indent(root, " ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _header(parent: ET.Element, header: Header) -> None:
    ET.SubElement(
        parent,
        "MessageHeader",
        {
            "ProtocolVersion": "3.1",
            "MessageClass": "Service",
            "MessageCategory": header.category,
            "MessageType": header.type,
            "ServiceID": header.service_id,
            "SaleID": header.sale_id,
            "POIID": header.poi_id,
        },
    )


def _attrs(**values: str | None) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None and v != ""}


def _response(parent: ET.Element, result: Result) -> None:
    element = ET.SubElement(
        parent, "Response", _attrs(Result=result.result, ErrorCondition=result.error_condition)
    )
    if result.additional is not None:
        ET.SubElement(element, "AdditionalResponse").text = result.additional


def _receipt(parent: ET.Element, qualifier: str, lines: tuple[str, ...]) -> None:
    if not lines:
        return
    receipt = ET.SubElement(parent, "PaymentReceipt", DocumentQualifier=qualifier)
    content = ET.SubElement(receipt, "OutputContent", OutputFormat="Text")
    part = "Cardholder" if qualifier == "CustomerReceipt" else "Merchant"
    ET.SubElement(content, "OutputText").text = cards.encode_receipt(lines, part)


def _body(root: ET.Element, body: Body, header: Header) -> None:
    element = ET.SubElement(root, KINDS[type(body)][1])
    match body:
        case LoginRequest():
            element.set("OperatorLanguage", body.language)
            ET.SubElement(element, "DateTime").text = body.date_time
            ET.SubElement(
                element,
                "SaleSoftware",
                ProviderIdentification=body.provider,
                ApplicationName=body.application,
                SoftwareVersion=body.version,
            )
            terminal = ET.SubElement(element, "SaleTerminalData", TerminalEnvironment="Attended")
            ET.SubElement(terminal, "SaleCapabilities").text = " ".join(body.capabilities)
        case LoginResponse():
            _response(element, body.response)
            system = ET.SubElement(element, "POISystemData")
            ET.SubElement(system, "POISoftware", _attrs(SoftwareVersion=body.poi_software))
            ET.SubElement(system, "POITerminalData", _attrs(POISerialNumber=body.poi_serial))
            ET.SubElement(system, "POIStatus", _attrs(GlobalStatus=body.global_status))
        case PaymentRequest():
            sale = ET.SubElement(element, "SaleData")
            ET.SubElement(
                sale,
                "SaleTransactionID",
                TransactionID=body.transaction_id,
                TimeStamp=body.timestamp,
            )
            payment = ET.SubElement(element, "PaymentTransaction")
            ET.SubElement(
                payment,
                "AmountsReq",
                Currency=body.currency,
                RequestedAmount=format_amount(body.amount),
            )
            ET.SubElement(element, "PaymentData", PaymentType=body.payment_type)
        case PaymentResponse():
            _payment_response(element, body)
        case ReversalRequest():
            element.set("ReversalReason", body.reason)
            original = ET.SubElement(
                element,
                "OriginalPOITransaction",
                _attrs(SaleID=header.sale_id, POIID=header.poi_id),
            )
            ET.SubElement(
                original,
                "POITransactionID",
                TransactionID=body.poi_transaction_id,
                TimeStamp=body.poi_timestamp,
            )
        case ReversalResponse():
            _response(element, body.response)
            if body.poi_transaction_id or body.poi_timestamp:
                poi = ET.SubElement(element, "POIData")
                ET.SubElement(
                    poi,
                    "POITransactionID",
                    _attrs(TransactionID=body.poi_transaction_id, TimeStamp=body.poi_timestamp),
                )
            if body.reversed_amount is not None:
                element.set("ReversedAmount", format_amount(body.reversed_amount))
            _receipt(element, "CustomerReceipt", body.customer_receipt)
        case AbortRequest():
            _reference(element, body.category, body.service_id, header)
            ET.SubElement(element, "AbortReason").text = body.reason
        case TransactionStatusRequest():
            if body.service_id is not None:
                _reference(element, body.category, body.service_id, header)
        case TransactionStatusResponse():
            _response(element, body.response)
            if body.repeated is not None:
                repeated = ET.SubElement(element, "RepeatedMessageResponse")
                _header(repeated, body.repeated.header)
                _body(repeated, body.repeated.body, body.repeated.header)
        case ReconciliationRequest():
            element.set("ReconciliationType", body.reconciliation_type)
        case ReconciliationResponse():
            element.set("ReconciliationType", body.reconciliation_type)
            _response(element, body.response)
            for totals in body.totals:
                ET.SubElement(
                    element,
                    "TransactionTotals",
                    PaymentInstrumentType="Card",
                    TransactionCount=str(totals.count),
                    TransactionAmount=format_amount(totals.amount),
                )
        case DiagnosisRequest():
            pass
        case DiagnosisResponse():
            _response(element, body.response)
            if body.global_status:
                ET.SubElement(element, "POIStatus", GlobalStatus=body.global_status)


def _reference(parent: ET.Element, category: str, service_id: str, header: Header) -> None:
    ET.SubElement(
        parent,
        "MessageReference",
        _attrs(
            MessageCategory=category,
            ServiceID=service_id,
            SaleID=header.sale_id,
            POIID=header.poi_id,
        ),
    )


def _payment_response(element: ET.Element, body: PaymentResponse) -> None:
    _response(element, body.response)
    if body.transaction_id or body.timestamp:
        sale = ET.SubElement(element, "SaleData")
        ET.SubElement(
            sale,
            "SaleTransactionID",
            _attrs(TransactionID=body.transaction_id, TimeStamp=body.timestamp),
        )
    if body.poi_transaction_id or body.poi_timestamp:
        poi = ET.SubElement(element, "POIData")
        ET.SubElement(
            poi,
            "POITransactionID",
            _attrs(TransactionID=body.poi_transaction_id, TimeStamp=body.poi_timestamp),
        )
    result = ET.SubElement(element, "PaymentResult", PaymentType=body.payment_type)
    if body.online is not None:
        result.set("OnlineFlag", "true" if body.online else "false")
    if body.payment_brand or body.masked_pan or body.entry_mode:
        instrument = ET.SubElement(result, "PaymentInstrumentData", PaymentInstrumentType="Card")
        ET.SubElement(
            instrument,
            "CardData",
            _attrs(
                PaymentBrand=body.payment_brand,
                MaskedPAN=body.masked_pan,
                EntryMode=body.entry_mode,
            ),
        )
    if body.authorized_amount is not None:
        ET.SubElement(
            result,
            "AmountsResp",
            Currency=body.currency,
            AuthorizedAmount=format_amount(body.authorized_amount),
        )
    if body.approval_code:
        acquirer = ET.SubElement(result, "PaymentAcquirerData")
        ET.SubElement(acquirer, "ApprovalCode").text = body.approval_code
    _receipt(element, "CashierReceipt", body.cashier_receipt)
    _receipt(element, "CustomerReceipt", body.customer_receipt)


# -- decoding -------------------------------------------------------------------


def decode(data: bytes) -> Message:
    """A whole SaleToPOIRequest/SaleToPOIResponse; NexoProtocolError for anything else."""
    root = parse_xml(data)
    if root.tag not in ("SaleToPOIRequest", "SaleToPOIResponse"):
        raise NexoProtocolError(f"root element {root.tag[:40]!r} is not SaleToPOI...")
    try:
        return _message(root, root.tag == "SaleToPOIResponse")
    except NexoProtocolError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        # A defect here must still surface as the driver's own error, with a hint.
        raise NexoProtocolError(f"unusable nexo message: {type(exc).__name__}: {exc}") from None


def _message(parent: ET.Element, response: bool) -> Message:
    children = list(parent)
    if len(children) < 2 or children[0].tag != "MessageHeader":
        raise NexoProtocolError(f"{parent.tag} lacks a MessageHeader followed by a body")
    header = _read_header(children[0])
    element = children[1]
    cls = BY_ELEMENT.get(element.tag)
    if cls is None:
        raise NexoProtocolError(f"unknown message body {element.tag[:40]!r}")
    category, _, is_response = KINDS[cls]
    if is_response != response or header.type != ("Response" if response else "Request"):
        raise NexoProtocolError(f"{element.tag} in a {parent.tag} of type {header.type!r}")
    if header.category != category:
        raise NexoProtocolError(
            f"{element.tag} under MessageCategory {header.category[:40]!r}, not {category!r}"
        )
    return Message(header, READERS[cls](element))


def _attr(element: ET.Element | None, name: str, default: str = "") -> str:
    if element is None:
        return default
    value = element.get(name, default)
    if len(value) > MAX_ATTRIBUTE:
        raise NexoProtocolError(f"{element.tag}@{name} is over {MAX_ATTRIBUTE} characters")
    return value


def _need(element: ET.Element, name: str) -> str:
    value = _attr(element, name)
    if not value:
        raise NexoProtocolError(f"{element.tag} lacks {name}")
    return value


def _text(element: ET.Element | None) -> str:
    text = (element.text or "").strip() if element is not None else ""
    if len(text) > cards.MAX_RECEIPT_BYTES:
        raise NexoProtocolError(f"{element.tag if element is not None else ''} text is too long")
    return text


def _read_header(element: ET.Element) -> Header:
    return Header(
        category=_need(element, "MessageCategory"),
        type=_need(element, "MessageType"),
        service_id=_need(element, "ServiceID"),
        sale_id=_attr(element, "SaleID"),
        poi_id=_attr(element, "POIID"),
    )


def _read_response(element: ET.Element) -> Result:
    response = element.find("Response")
    if response is None:
        raise NexoProtocolError(f"{element.tag} lacks Response")
    result = _need(response, "Result")
    if result not in ("Success", "Failure", "Partial"):
        raise NexoProtocolError(f"Response Result {result[:40]!r} is not Success/Failure/Partial")
    additional = response.find("AdditionalResponse")
    return Result(
        result,
        _attr(response, "ErrorCondition") or None,
        None if additional is None else (additional.text or ""),
    )


def _read_amount(element: ET.Element | None, name: str) -> int | None:
    value = _attr(element, name)
    return parse_amount(value, name) if value else None


def _read_receipts(element: ET.Element) -> dict[str, tuple[str, ...]]:
    receipts: dict[str, tuple[str, ...]] = {}
    for receipt in element.findall("PaymentReceipt"):
        text = receipt.find("OutputContent/OutputText")
        if text is not None and text.text:
            receipts[_attr(receipt, "DocumentQualifier")] = cards.decode_receipt(text.text)
    return receipts


def _read_login_request(e: ET.Element) -> LoginRequest:
    software = e.find("SaleSoftware")
    if software is None:
        raise NexoProtocolError("LoginRequest lacks SaleSoftware")
    return LoginRequest(
        date_time=_text(e.find("DateTime")),
        provider=_attr(software, "ProviderIdentification"),
        application=_attr(software, "ApplicationName"),
        version=_attr(software, "SoftwareVersion"),
        language=_attr(e, "OperatorLanguage", "sv"),
        capabilities=tuple(_text(e.find("SaleTerminalData/SaleCapabilities")).split()),
    )


def _read_login_response(e: ET.Element) -> LoginResponse:
    return LoginResponse(
        _read_response(e),
        poi_serial=_attr(e.find("POISystemData/POITerminalData"), "POISerialNumber"),
        poi_software=_attr(e.find("POISystemData/POISoftware"), "SoftwareVersion"),
        global_status=_attr(e.find("POISystemData/POIStatus"), "GlobalStatus"),
    )


def _read_payment_request(e: ET.Element) -> PaymentRequest:
    sale = e.find("SaleData/SaleTransactionID")
    amounts = e.find("PaymentTransaction/AmountsReq")
    if sale is None or amounts is None:
        raise NexoProtocolError("PaymentRequest lacks SaleTransactionID or AmountsReq")
    return PaymentRequest(
        transaction_id=_need(sale, "TransactionID"),
        timestamp=_attr(sale, "TimeStamp"),
        amount=parse_amount(_need(amounts, "RequestedAmount"), "RequestedAmount"),
        currency=_attr(amounts, "Currency", "SEK"),
        payment_type=_attr(e.find("PaymentData"), "PaymentType", "Normal"),
    )


def _flag(value: str) -> bool | None:
    if value == "":
        return None
    if value not in ("true", "false", "1", "0"):
        raise NexoProtocolError(f"OnlineFlag {value[:20]!r} is not a boolean")
    return value in ("true", "1")


def _read_payment_response(e: ET.Element) -> PaymentResponse:
    sale = e.find("SaleData/SaleTransactionID")
    poi = e.find("POIData/POITransactionID")
    result = e.find("PaymentResult")
    card = e.find("PaymentResult/PaymentInstrumentData/CardData")
    amounts = e.find("PaymentResult/AmountsResp")
    receipts = _read_receipts(e)
    return PaymentResponse(
        _read_response(e),
        transaction_id=_attr(sale, "TransactionID"),
        timestamp=_attr(sale, "TimeStamp"),
        poi_transaction_id=_attr(poi, "TransactionID"),
        poi_timestamp=_attr(poi, "TimeStamp"),
        payment_type=_attr(result, "PaymentType", "Normal"),
        payment_brand=_attr(card, "PaymentBrand"),
        masked_pan=cards.mask_pan(_attr(card, "MaskedPAN")),
        entry_mode=_attr(card, "EntryMode"),
        authorized_amount=_read_amount(amounts, "AuthorizedAmount"),
        currency=_attr(amounts, "Currency", "SEK"),
        approval_code=_text(e.find("PaymentResult/PaymentAcquirerData/ApprovalCode")),
        online=_flag(_attr(result, "OnlineFlag")),
        customer_receipt=receipts.get("CustomerReceipt", ()),
        cashier_receipt=receipts.get("CashierReceipt", ()),
    )


def _read_reversal_request(e: ET.Element) -> ReversalRequest:
    poi = e.find("OriginalPOITransaction/POITransactionID")
    if poi is None:
        raise NexoProtocolError("ReversalRequest lacks OriginalPOITransaction/POITransactionID")
    return ReversalRequest(
        poi_transaction_id=_need(poi, "TransactionID"),
        poi_timestamp=_attr(poi, "TimeStamp"),
        reason=_attr(e, "ReversalReason", "MerchantCancel"),
    )


def _read_reversal_response(e: ET.Element) -> ReversalResponse:
    poi = e.find("POIData/POITransactionID")
    return ReversalResponse(
        _read_response(e),
        poi_transaction_id=_attr(poi, "TransactionID"),
        poi_timestamp=_attr(poi, "TimeStamp"),
        reversed_amount=_read_amount(e, "ReversedAmount"),
        customer_receipt=_read_receipts(e).get("CustomerReceipt", ()),
    )


def _read_abort_request(e: ET.Element) -> AbortRequest:
    ref = e.find("MessageReference")
    if ref is None:
        raise NexoProtocolError("AbortRequest lacks MessageReference")
    return AbortRequest(
        service_id=_need(ref, "ServiceID"),
        category=_attr(ref, "MessageCategory", "Payment"),
        reason=_text(e.find("AbortReason")),
    )


def _read_status_request(e: ET.Element) -> TransactionStatusRequest:
    ref = e.find("MessageReference")
    if ref is None:
        return TransactionStatusRequest()
    return TransactionStatusRequest(
        service_id=_attr(ref, "ServiceID") or None,
        category=_attr(ref, "MessageCategory", "Payment"),
    )


def _read_status_response(e: ET.Element) -> TransactionStatusResponse:
    repeated = e.find("RepeatedMessageResponse")
    inner = None
    if repeated is not None:
        inner = _message(repeated, True)
        if not isinstance(inner.body, PaymentResponse | ReversalResponse):
            raise NexoProtocolError(f"a repeated {type(inner.body).__name__} is not a transaction")
    return TransactionStatusResponse(_read_response(e), inner)


def _read_reconciliation_response(e: ET.Element) -> ReconciliationResponse:
    totals = []
    for element in e.findall("TransactionTotals"):
        count = _attr(element, "TransactionCount", "0")
        if not count.isdigit() or len(count) > 9:
            raise NexoProtocolError(f"TransactionCount {count[:20]!r} is not a count")
        totals.append(Totals(int(count), _read_amount(element, "TransactionAmount") or 0))
    return ReconciliationResponse(
        _read_response(e), _attr(e, "ReconciliationType", "SaleReconciliation"), tuple(totals)
    )


READERS: dict[type, Callable[[ET.Element], Any]] = {
    LoginRequest: _read_login_request,
    LoginResponse: _read_login_response,
    PaymentRequest: _read_payment_request,
    PaymentResponse: _read_payment_response,
    ReversalRequest: _read_reversal_request,
    ReversalResponse: _read_reversal_response,
    AbortRequest: _read_abort_request,
    TransactionStatusRequest: _read_status_request,
    TransactionStatusResponse: _read_status_response,
    ReconciliationRequest: lambda e: ReconciliationRequest(
        _attr(e, "ReconciliationType", "SaleReconciliation")
    ),
    ReconciliationResponse: _read_reconciliation_response,
    DiagnosisRequest: lambda e: DiagnosisRequest(),
    DiagnosisResponse: lambda e: DiagnosisResponse(
        _read_response(e), _attr(e.find("POIStatus"), "GlobalStatus")
    ),
}
